//! A user namespace with given id maps and no process in it, held by a descriptor: what the
//! daemon needs to ask the kernel whether a file system can be idmapped before any workspace user
//! namespace exists. Only a single-threaded process may `unshare(CLONE_NEWUSER)`, and the daemon
//! runs inside multi-threaded hosts, so a forked child makes the namespace and exits once its
//! maps are written and the namespace is held.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// A new user namespace whose `uid_map` and `gid_map` hold `uid_map` / `gid_map` (kernel map
/// text), as a `/proc/<pid>/ns/user` descriptor. Blocking (a child process starts and ends).
pub fn detached_user_namespace(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (ready_fd, go_fd) = (ready_write.as_raw_fd(), go_read.as_raw_fd());
    let parent_ends = [ready_read.as_raw_fd(), go_write.as_raw_fd()];
    // SAFETY: after fork the child runs only async-signal-safe system calls on descriptors that
    // were opened before the fork (unshare, write, read, _exit) and never returns into Rust code,
    // so no lock or allocator state copied from other threads is touched.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: see above; the child ends in _exit whatever happens.
        unsafe {
            // The parent's ends: holding the write end open would keep the read below from
            // ever seeing the end of file.
            for fd in parent_ends {
                libc::close(fd);
            }
            let made = libc::unshare(libc::CLONE_NEWUSER) == 0;
            let answer = [u8::from(made)];
            libc::write(ready_fd, answer.as_ptr().cast(), 1);
            // Wait until the parent holds the namespace (a byte, or the end of file when it is
            // gone).
            let mut byte = [0u8; 1];
            libc::read(go_fd, byte.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_write);
    drop(go_read);
    let held = (|| {
        let mut answer = [0u8; 1];
        let mut ready = std::fs::File::from(ready_read);
        if ready.read(&mut answer)? != 1 || answer[0] != 1 {
            return Err(io::Error::other(
                "cannot create a user namespace (unshare(CLONE_NEWUSER) failed)",
            ));
        }
        for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let mut map = OpenOptions::new()
                .write(true)
                .open(format!("/proc/{child}/{file}"))?;
            map.write_all(text.as_bytes())?;
        }
        let ns = std::fs::File::open(format!("/proc/{child}/ns/user"))?;
        Ok(OwnedFd::from(ns))
    })();
    // The child exits on this byte (or the end of file).
    let _ = std::fs::File::from(go_write).write_all(&[1]);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_outlives_its_process_and_keeps_its_maps() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: writing id maps of a new user namespace needs root");
            return;
        }
        let ns = detached_user_namespace("0 33333 1\n", "0 33333 1\n").expect("user namespace");
        let own = std::fs::metadata("/proc/self/ns/user").expect("own user namespace");
        let theirs = nix::sys::stat::fstat(&ns).expect("fstat");
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&own),
            theirs.st_ino,
            "a new namespace, not ours"
        );
    }
}
