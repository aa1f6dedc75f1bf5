//! XFS project quotas: a folder's project id (FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR) and the
//! limits of a project (`quotactl_fd`, Linux 5.14+, with the XFS commands of
//! `linux/dqblk_xfs.h`). Sizes and numbers are checked in the tests.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `FS_XFLAG_PROJINHERIT`: new files and folders take the folder's project id.
pub const XFLAG_PROJINHERIT: u32 = 0x0000_0200;
/// `PRJQUOTA`
const PRJQUOTA: u32 = 2;
/// `XQM_CMD(x)`: `('X' << 8) + x`
const fn xqm_cmd(x: u32) -> u32 {
    ((b'X' as u32) << 8) + x
}
/// `QCMD(cmd, PRJQUOTA)`
const fn qcmd(cmd: u32) -> libc::c_int {
    ((cmd << 8) | PRJQUOTA) as libc::c_int
}
const Q_XGETQUOTA: libc::c_int = qcmd(xqm_cmd(3));
const Q_XSETQLIM: libc::c_int = qcmd(xqm_cmd(4));
const Q_XGETQSTATV: libc::c_int = qcmd(xqm_cmd(8));
/// `FS_QUOTA_PDQ_ACCT` / `FS_QUOTA_PDQ_ENFD` in `fs_quota_statv.qs_flags`.
const PDQ_ACCT: u16 = 1 << 4;
const PDQ_ENFD: u16 = 1 << 5;
/// `FS_DQ_BSOFT | FS_DQ_BHARD`
const DQ_BLOCK_LIMITS: u16 = (1 << 2) | (1 << 3);
/// `FS_PROJ_QUOTA`
const PROJ_QUOTA: i8 = 2;

/// `struct fsxattr`
#[repr(C)]
#[derive(Default)]
pub struct FsXattr {
    pub xflags: u32,
    extsize: u32,
    nextents: u32,
    pub projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

/// `_IOR('X', 31, struct fsxattr)` / `_IOW('X', 32, struct fsxattr)`
const FS_IOC_FSGETXATTR: libc::c_ulong =
    (2 << 30) | (28 << 16) | ((b'X' as libc::c_ulong) << 8) | 31;
const FS_IOC_FSSETXATTR: libc::c_ulong =
    (1 << 30) | (28 << 16) | ((b'X' as libc::c_ulong) << 8) | 32;

/// `struct fs_qfilestatv`
#[repr(C)]
#[derive(Default)]
struct QFileStatV {
    ino: u64,
    nblks: u64,
    nextents: u32,
    pad: u32,
}

/// `struct fs_quota_statv`
#[repr(C)]
#[derive(Default)]
pub(crate) struct QuotaStatV {
    version: i8,
    pad1: u8,
    flags: u16,
    incoredqs: u32,
    uquota: QFileStatV,
    gquota: QFileStatV,
    pquota: QFileStatV,
    btimelimit: i32,
    itimelimit: i32,
    rtbtimelimit: i32,
    bwarnlimit: u16,
    iwarnlimit: u16,
    rtbwarnlimit: u16,
    pad3: u16,
    pad4: u32,
    pad2: [u64; 7],
}

/// `struct fs_disk_quota`
#[repr(C)]
#[derive(Default)]
pub(crate) struct DiskQuota {
    version: i8,
    flags: i8,
    fieldmask: u16,
    id: u32,
    blk_hardlimit: u64,
    blk_softlimit: u64,
    ino_hardlimit: u64,
    ino_softlimit: u64,
    bcount: u64,
    icount: u64,
    itimer: i32,
    btimer: i32,
    iwarns: u16,
    bwarns: u16,
    itimer_hi: i8,
    btimer_hi: i8,
    rtbtimer_hi: i8,
    padding2: i8,
    rtb_hardlimit: u64,
    rtb_softlimit: u64,
    rtbcount: u64,
    rtbtimer: i32,
    rtbwarns: u16,
    padding3: i16,
    padding4: [u8; 8],
}

/// The project id and flags of the file or folder `fd`.
pub fn get_xattr(fd: BorrowedFd<'_>) -> io::Result<FsXattr> {
    let mut attr = FsXattr::default();
    // SAFETY: `attr` is a `struct fsxattr`, which the request fills; the descriptor is open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSGETXATTR as _, &mut attr) };
    super::check(ret as libc::c_long)?;
    Ok(attr)
}

/// Gives the folder `fd` project id `projid`, inherited by everything created in it.
pub fn set_project(fd: BorrowedFd<'_>, projid: u32) -> io::Result<()> {
    let mut attr = get_xattr(fd)?;
    attr.projid = projid;
    attr.xflags |= XFLAG_PROJINHERIT;
    // SAFETY: `attr` is a `struct fsxattr`, which the request reads; the descriptor is open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_FSSETXATTR as _, &mut attr) };
    super::check(ret as libc::c_long).map(|_| ())
}

/// `quotactl_fd(fd, cmd, id, addr)`.
///
/// # Safety
/// `addr` must point to the structure `cmd` reads or writes, valid for the call.
unsafe fn quotactl_fd<T>(
    fd: BorrowedFd<'_>,
    cmd: libc::c_int,
    id: u32,
    addr: *mut T,
) -> io::Result<()> {
    // SAFETY: the caller passes the structure `cmd` expects; the descriptor is open (borrowed).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_quotactl_fd,
            fd.as_raw_fd(),
            cmd as libc::c_uint,
            id as libc::c_int,
            addr,
        )
    };
    super::check(ret).map(|_| ())
}

/// Whether project quotas are accounted and enforced on the file system of `fd`.
/// ENOSYS: no `quotactl_fd` (kernel before 5.14) or no quota support in the kernel.
pub fn project_quota_enforced(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut stat = QuotaStatV {
        version: 1, // FS_QSTATV_VERSION1
        ..Default::default()
    };
    // SAFETY: `stat` is a `struct fs_quota_statv` with its version set, which the command fills.
    unsafe { quotactl_fd(fd, Q_XGETQSTATV, 0, &mut stat)? };
    Ok(stat.flags & (PDQ_ACCT | PDQ_ENFD) == PDQ_ACCT | PDQ_ENFD)
}

/// Inodes charged to project `projid`; 0 when it has none (also when the kernel has no record).
pub fn project_inodes(fd: BorrowedFd<'_>, projid: u32) -> io::Result<u64> {
    let mut quota = DiskQuota::default();
    // SAFETY: `quota` is a `struct fs_disk_quota`, which the command fills.
    match unsafe { quotactl_fd(fd, Q_XGETQUOTA, projid, &mut quota) } {
        Ok(()) => Ok(quota.icount),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Sets the soft and hard block limit of project `projid` to `bytes` (rounded up to 512-byte
/// blocks); 0 removes the limit.
pub fn set_project_limit(fd: BorrowedFd<'_>, projid: u32, bytes: u64) -> io::Result<()> {
    let blocks = bytes.div_ceil(512);
    let mut quota = DiskQuota {
        version: 1, // FS_DQUOT_VERSION
        flags: PROJ_QUOTA,
        fieldmask: DQ_BLOCK_LIMITS,
        id: projid,
        blk_hardlimit: blocks,
        blk_softlimit: blocks,
        ..Default::default()
    };
    // SAFETY: `quota` is a `struct fs_disk_quota`, which the command reads.
    unsafe { quotactl_fd(fd, Q_XSETQLIM, projid, &mut quota) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_and_numbers_match_the_linux_headers() {
        // Values printed by a C program including linux/fs.h, linux/dqblk_xfs.h, linux/quota.h.
        assert_eq!(std::mem::size_of::<FsXattr>(), 28);
        assert_eq!(std::mem::size_of::<DiskQuota>(), 112);
        assert_eq!(std::mem::size_of::<QuotaStatV>(), 160);
        assert_eq!(FS_IOC_FSGETXATTR, 0x801c_581f);
        assert_eq!(FS_IOC_FSSETXATTR, 0x401c_5820);
        assert_eq!(Q_XSETQLIM, 0x0058_0402);
        assert_eq!(Q_XGETQUOTA, 0x0058_0302);
        assert_eq!(Q_XGETQSTATV, 0x0058_0802);
    }
}
