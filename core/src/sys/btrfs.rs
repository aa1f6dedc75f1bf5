//! btrfs ioctls for storage quotas: subvolumes (create, find their id, destroy) and qgroups
//! (enable quotas, limit, remove). Structures and numbers per `linux/btrfs.h`; their sizes are
//! checked in the tests.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// `BTRFS_IOCTL_MAGIC`
const MAGIC: u32 = 0x94;
/// `BTRFS_PATH_NAME_MAX`
const PATH_NAME_MAX: usize = 4087;
/// `BTRFS_INO_LOOKUP_PATH_MAX`
const INO_LOOKUP_PATH_MAX: usize = 4080;
/// `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root folder.
pub const FIRST_FREE_OBJECTID: u64 = 256;
/// `BTRFS_QGROUP_LIMIT_MAX_RFER`
const QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;
/// `BTRFS_QUOTA_CTL_ENABLE`
const QUOTA_CTL_ENABLE: u64 = 1;

/// `_IOC(dir, MAGIC, nr, size)` as in `asm-generic/ioctl.h`.
const fn ioc(dir: u32, nr: u32, size: usize) -> libc::c_ulong {
    ((dir << 30) | ((size as u32) << 16) | (MAGIC << 8) | nr) as libc::c_ulong
}
const WRITE: u32 = 1;
const READ: u32 = 2;

/// `struct btrfs_ioctl_vol_args`
#[repr(C)]
pub(crate) struct VolArgs {
    fd: i64,
    name: [u8; PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_ino_lookup_args`
#[repr(C)]
pub(crate) struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; INO_LOOKUP_PATH_MAX],
}

/// `struct btrfs_qgroup_limit`
#[repr(C)]
pub(crate) struct QgroupLimit {
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args`
#[repr(C)]
pub(crate) struct QgroupLimitArgs {
    qgroupid: u64,
    lim: QgroupLimit,
}

/// `struct btrfs_ioctl_qgroup_create_args`
#[repr(C)]
pub(crate) struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

/// `struct btrfs_ioctl_quota_ctl_args`
#[repr(C)]
pub(crate) struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_fs_info_args` (only the fields before `fsid` and `fsid` are read).
#[repr(C)]
pub(crate) struct FsInfoArgs {
    max_id: u64,
    num_devices: u64,
    fsid: [u8; 16],
    rest: [u8; 1024 - 32],
}

const SUBVOL_CREATE: libc::c_ulong = ioc(WRITE, 14, std::mem::size_of::<VolArgs>());
const SNAP_DESTROY: libc::c_ulong = ioc(WRITE, 15, std::mem::size_of::<VolArgs>());
const INO_LOOKUP: libc::c_ulong = ioc(READ | WRITE, 18, std::mem::size_of::<InoLookupArgs>());
const FS_INFO: libc::c_ulong = ioc(READ, 31, std::mem::size_of::<FsInfoArgs>());
const QUOTA_CTL: libc::c_ulong = ioc(READ | WRITE, 40, std::mem::size_of::<QuotaCtlArgs>());
const QGROUP_CREATE: libc::c_ulong = ioc(WRITE, 42, std::mem::size_of::<QgroupCreateArgs>());
const QGROUP_LIMIT: libc::c_ulong = ioc(READ, 43, std::mem::size_of::<QgroupLimitArgs>());

fn vol_args(name: &OsStr) -> io::Result<Box<VolArgs>> {
    let bytes = name.as_bytes();
    if bytes.is_empty()
        || bytes.len() > PATH_NAME_MAX
        || bytes.contains(&0)
        || bytes.contains(&b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single folder name",
        ));
    }
    let mut args = Box::new(VolArgs {
        fd: 0,
        name: [0; PATH_NAME_MAX + 1],
    });
    args.name[..bytes.len()].copy_from_slice(bytes);
    Ok(args)
}

/// `ioctl(fd, request, arg)` for the requests of this module.
///
/// # Safety
/// `arg` must point to the structure that `request` reads or writes, valid for the call.
unsafe fn ioctl<T>(fd: BorrowedFd<'_>, request: libc::c_ulong, arg: *mut T) -> io::Result<()> {
    // SAFETY: the caller passes the structure `request` expects; the descriptor is open (borrowed).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    super::check(ret as libc::c_long).map(|_| ())
}

/// Creates subvolume `name` in the folder `parent` (BTRFS_IOC_SUBVOL_CREATE).
pub fn create_subvolume(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let mut args = vol_args(name)?;
    // SAFETY: `args` is a `btrfs_ioctl_vol_args` with a NUL-terminated name, as the request reads.
    unsafe { ioctl(parent, SUBVOL_CREATE, &mut *args) }
}

/// Destroys subvolume `name` in the folder `parent` with everything in it (BTRFS_IOC_SNAP_DESTROY;
/// the kernel frees its space in the background).
pub fn destroy_subvolume(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let mut args = vol_args(name)?;
    // SAFETY: as in `create_subvolume`.
    unsafe { ioctl(parent, SNAP_DESTROY, &mut *args) }
}

/// The id of the subvolume that holds `fd` (BTRFS_IOC_INO_LOOKUP with tree id 0).
pub fn subvolume_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut args = Box::new(InoLookupArgs {
        treeid: 0,
        objectid: FIRST_FREE_OBJECTID,
        name: [0; INO_LOOKUP_PATH_MAX],
    });
    // SAFETY: `args` is a `btrfs_ioctl_ino_lookup_args`, which the request reads and fills.
    unsafe { ioctl(fd, INO_LOOKUP, &mut *args)? };
    Ok(args.treeid)
}

/// Limits what level-0 qgroup `0/<subvolume>` refers to, in bytes (BTRFS_IOC_QGROUP_LIMIT).
/// ENOTCONN: quotas are not enabled on this file system.
pub fn limit_referenced(fd: BorrowedFd<'_>, subvolume: u64, bytes: u64) -> io::Result<()> {
    let mut args = QgroupLimitArgs {
        qgroupid: subvolume,
        lim: QgroupLimit {
            flags: QGROUP_LIMIT_MAX_RFER,
            max_rfer: bytes,
            max_excl: 0,
            rsv_rfer: 0,
            rsv_excl: 0,
        },
    };
    // SAFETY: `args` is a `btrfs_ioctl_qgroup_limit_args`, which the request reads.
    unsafe { ioctl(fd, QGROUP_LIMIT, &mut args) }
}

/// Removes qgroup `0/<subvolume>` (BTRFS_IOC_QGROUP_CREATE with create = 0). EBUSY while it
/// still accounts space, ENOENT when it is gone already.
pub fn remove_qgroup(fd: BorrowedFd<'_>, subvolume: u64) -> io::Result<()> {
    let mut args = QgroupCreateArgs {
        create: 0,
        qgroupid: subvolume,
    };
    // SAFETY: `args` is a `btrfs_ioctl_qgroup_create_args`, which the request reads.
    unsafe { ioctl(fd, QGROUP_CREATE, &mut args) }
}

/// Enables quotas on the file system of `fd` (BTRFS_IOC_QUOTA_CTL, BTRFS_QUOTA_CTL_ENABLE).
pub fn enable_quotas(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut args = QuotaCtlArgs {
        cmd: QUOTA_CTL_ENABLE,
        status: 0,
    };
    // SAFETY: `args` is a `btrfs_ioctl_quota_ctl_args`, which the request reads and writes.
    unsafe { ioctl(fd, QUOTA_CTL, &mut args) }
}

/// The file system's id (BTRFS_IOC_FS_INFO), which names its folder in `/sys/fs/btrfs`.
pub fn fsid(fd: BorrowedFd<'_>) -> io::Result<[u8; 16]> {
    let mut args = Box::new(FsInfoArgs {
        max_id: 0,
        num_devices: 0,
        fsid: [0; 16],
        rest: [0; 1024 - 32],
    });
    // SAFETY: `args` is a `btrfs_ioctl_fs_info_args`, which the request fills.
    unsafe { ioctl(fd, FS_INFO, &mut *args)? };
    Ok(args.fsid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_and_request_numbers_match_linux_btrfs_h() {
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<InoLookupArgs>(), 4096);
        assert_eq!(std::mem::size_of::<QgroupLimitArgs>(), 48);
        assert_eq!(std::mem::size_of::<QgroupCreateArgs>(), 16);
        assert_eq!(std::mem::size_of::<QuotaCtlArgs>(), 16);
        assert_eq!(std::mem::size_of::<FsInfoArgs>(), 1024);
        // Values printed by a C program including linux/btrfs.h (x86_64).
        assert_eq!(SUBVOL_CREATE, 0x5000_940e);
        assert_eq!(SNAP_DESTROY, 0x5000_940f);
        assert_eq!(INO_LOOKUP, 0xd000_9412);
        assert_eq!(FS_INFO, 0x8400_941f);
        assert_eq!(QUOTA_CTL, 0xc010_9428);
        assert_eq!(QGROUP_CREATE, 0x4010_942a);
        assert_eq!(QGROUP_LIMIT, 0x8030_942b);
    }

    #[test]
    fn a_volume_name_is_one_folder_name() {
        assert!(vol_args(OsStr::new("ws-1")).is_ok());
        for bad in ["", "a/b", "a\0b"] {
            assert!(vol_args(OsStr::new(bad)).is_err(), "{bad:?}");
        }
        assert!(vol_args(OsStr::new(&"x".repeat(PATH_NAME_MAX + 1))).is_err());
    }
}
