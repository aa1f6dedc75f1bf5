//! Storage quotas for real: btrfs on a loop device (qgroups), XFS where the kernel has project
//! quotas, tmpfs for an area without quotas. Each mount, loop device and image goes with its
//! guard, also when a test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wsd_proto::wsdaemon::{DisposeWorkspaceRequest, DisposeWorkspaceResponse};

use super::*;
use crate::testing::{call, config, empty_workspace};
use crate::{CallContext, Daemon};

const MIB: u64 = 1 << 20;

#[test]
fn project_ids_are_stable_and_stay_in_their_range() {
    let a = first_project_id("ws-1");
    assert_eq!(a, first_project_id("ws-1"));
    assert_ne!(a, first_project_id("ws-2"));
    for id in ["", "a", "ws-1", "0123456789abcdef"] {
        assert!(PROJECT_IDS.contains(&first_project_id(id)));
    }
    assert_eq!(next_project_id(PROJECT_IDS.end - 1), PROJECT_IDS.start);
    assert_eq!(next_project_id(PROJECT_IDS.start), PROJECT_IDS.start + 1);
}

#[test]
fn file_system_ids_are_named_as_sysfs_names_them() {
    let id = [
        0x6d, 0xcf, 0x15, 0x9d, 0xe1, 0x8c, 0x46, 0x93, 0x8e, 0x4d, 0x81, 0xf0, 0xbb, 0x95, 0xa6,
        0xd4,
    ];
    assert_eq!(uuid_text(&id), "6dcf159d-e18c-4693-8e4d-81f0bb95a6d4");
    assert_eq!(fs_name(0x0102_1994), "tmpfs");
    assert_eq!(fs_name(0x1234), "file system type 0x1234");
}

fn run(cmd: &str, args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A file system on a loop device mounted on a temporary folder; unmounted, detached and
/// deleted when dropped.
struct LoopMount {
    dir: tempfile::TempDir,
    device: Option<String>,
    mounted: bool,
}

impl LoopMount {
    /// `mkfs` (with `mkfs_args`) on a `size` image, mounted with `options`; Err(reason) where
    /// this machine cannot.
    fn new(
        mkfs: &str,
        mkfs_args: &[&str],
        size: &str,
        options: &str,
    ) -> std::result::Result<LoopMount, String> {
        if !is_root() {
            return Err("needs root".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut m = LoopMount {
            dir,
            device: None,
            mounted: false,
        };
        let image = m.image();
        let image = image.to_str().ok_or("temp path")?;
        run("truncate", &["-s", size, image])?;
        std::fs::create_dir(m.mnt()).map_err(|e| e.to_string())?;
        let device = run("losetup", &["--find", "--show", image])?
            .trim()
            .to_string();
        m.device = Some(device.clone());
        let mut args = mkfs_args.to_vec();
        args.push(&device);
        run(mkfs, &args)?;
        let mnt = m.mnt();
        let mnt = mnt.to_str().ok_or("temp path")?;
        run("mount", &["-o", options, &device, mnt])?;
        m.mounted = true;
        Ok(m)
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("fs.img")
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted {
            let mnt = self.mnt();
            let mnt = mnt.to_string_lossy();
            if run("umount", &[&mnt]).is_err() {
                let _ = run("umount", &["-l", &mnt]);
            }
        }
        if let Some(device) = &self.device {
            let _ = run("losetup", &["-d", device]);
        }
    }
}

/// A btrfs file system with quotas enabled (`quotas`) or not, or None with "skipped: …" printed.
fn btrfs(quotas: bool) -> Option<LoopMount> {
    // mkfs.btrfs needs at least 114 MiB.
    let fs = match LoopMount::new("mkfs.btrfs", &["-q", "-f"], "256M", "rw") {
        Ok(fs) => fs,
        Err(why) => {
            println!("skipped: no btrfs here: {why}");
            return None;
        }
    };
    if quotas {
        run("btrfs", &["quota", "enable", &fs.mnt().to_string_lossy()]).expect("quota enable");
    }
    Some(fs)
}

/// Writes `mib` MiB (not compressible) to `path` and syncs it, so quota accounting sees them.
fn write_mib(path: &Path, mib: u64) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let chunk: Vec<u8> = (0..MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for _ in 0..mib {
        f.write_all(&chunk)?;
    }
    f.sync_all()
}

fn assert_over_quota(result: std::io::Result<()>) {
    let e = result.expect_err("a write past the quota fails");
    assert!(
        matches!(e.raw_os_error(), Some(libc::EDQUOT) | Some(libc::ENOSPC)),
        "EDQUOT or ENOSPC, got {e}"
    );
}

/// `(referenced, max referenced)` of qgroup `0/<id>` as `btrfs qgroup show` reports them; None
/// when it is gone.
fn qgroup(mnt: &Path, id: u64) -> Option<(u64, Option<u64>)> {
    let out = run(
        "btrfs",
        &["qgroup", "show", "-re", "--raw", &mnt.to_string_lossy()],
    )
    .expect("qgroup show");
    out.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.first() == Some(&format!("0/{id}").as_str())).then(|| {
            (
                fields[1].parse().expect("referenced"),
                fields[3].parse().ok(),
            )
        })
    })
}

fn subvolume_id(path: &Path) -> u64 {
    run(
        "btrfs",
        &["inspect-internal", "rootid", &path.to_string_lossy()],
    )
    .expect("rootid")
    .trim()
    .parse()
    .expect("a subvolume id")
}

fn subvolumes(mnt: &Path) -> String {
    run("btrfs", &["subvolume", "list", &mnt.to_string_lossy()]).expect("subvolume list")
}

/// Waits until the kernel has dropped a destroyed subvolume and with it its qgroup.
fn assert_qgroup_goes(mnt: &Path, id: u64) {
    let mnt_text = mnt.to_string_lossy();
    let started = Instant::now();
    while qgroup(mnt, id).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "qgroup 0/{id} is still there: {:?}",
            qgroup(mnt, id)
        );
        let _ = run("btrfs", &["filesystem", "sync", &mnt_text]);
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("qgroup 0/{id} gone after {:?}", started.elapsed());
}

fn quota_workspace(
    id: &str,
    meta_id: &str,
    bytes: u64,
) -> wsd_proto::wsdaemon::InitWorkspaceRequest {
    let mut req = empty_workspace(id);
    if let Some(m) = req.metadata.as_mut() {
        m.meta_id = meta_id.into();
    }
    req.storage_quota_bytes = bytes as i64;
    req
}

async fn init(d: &Daemon, req: wsd_proto::wsdaemon::InitWorkspaceRequest) {
    let _: wsd_proto::wsdaemon::InitWorkspaceResponse = call(
        d,
        "wsdaemon.WorkspaceContentService/InitWorkspace",
        req,
        &CallContext::default(),
    )
    .await
    .expect("init");
}

async fn dispose(d: &Daemon, id: &str, backup: bool) {
    let req = DisposeWorkspaceRequest {
        id: id.into(),
        backup,
        backup_logs: false,
    };
    let _: DisposeWorkspaceResponse = call(
        d,
        "wsdaemon.WorkspaceContentService/DisposeWorkspace",
        req,
        &CallContext::default(),
    )
    .await
    .expect("dispose");
}

/// A daemon config whose working area is `area` and whose backups stay in `dir`.
fn config_on(area: &Path, dir: &Path) -> crate::Config {
    let mut cfg = config(dir);
    cfg.working_area = area.join("area");
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_btrfs_quota_is_hard_after_init_survives_a_restart_and_goes_with_the_workspace() {
    let Some(fs) = btrfs(true) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_on(&fs.mnt(), dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");
    init(&d, quota_workspace("ws-q", "m-q", 8 * MIB)).await;

    let content = cfg.working_area.join("ws-q");
    let id = subvolume_id(&content);
    assert!(id >= 256, "the content folder is a subvolume of its own");
    assert_eq!(qgroup(&fs.mnt(), id).and_then(|q| q.1), Some(8 * MIB));
    assert!(content.join(".gitpod/ready").exists());
    assert_over_quota(write_mib(&content.join("big"), 16));

    // A new daemon on the same area sets the limit again (here lost while it was down), and
    // disposal finds the subvolume.
    d.shutdown(Duration::from_secs(1)).await;
    run(
        "btrfs",
        &["qgroup", "limit", "none", &content.to_string_lossy()],
    )
    .expect("drop the limit");
    assert_eq!(qgroup(&fs.mnt(), id).and_then(|q| q.1), None);
    let d = Daemon::start(cfg.clone()).await.expect("restart");
    assert_eq!(qgroup(&fs.mnt(), id).and_then(|q| q.1), Some(8 * MIB));
    assert_over_quota(write_mib(&content.join("big2"), 16));
    dispose(&d, "ws-q", false).await;
    assert!(!content.exists());
    assert!(
        !subvolumes(&fs.mnt()).contains("ws-q"),
        "{}",
        subvolumes(&fs.mnt())
    );
    assert_qgroup_goes(&fs.mnt(), id);

    // The same id again, now without a quota: a plain folder, no limit.
    init(&d, quota_workspace("ws-q", "m-q", 0)).await;
    assert_eq!(
        subvolume_id(&content),
        5,
        "a plain folder of the top subvolume"
    );
    write_mib(&content.join("big"), 16).expect("no quota, no limit");
    dispose(&d, "ws-q", false).await;
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_workspace_left_initializing_by_a_crash_goes_with_its_subvolume_at_restart() {
    let Some(fs) = btrfs(true) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_on(&fs.mnt(), dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");
    init(&d, quota_workspace("ws-c", "m-c", 8 * MIB)).await;
    let content = cfg.working_area.join("ws-c");
    let id = subvolume_id(&content);
    write_mib(&content.join("data"), 4).expect("write");
    d.shutdown(Duration::from_secs(1)).await;

    // As if the daemon had stopped in the middle of the init.
    let state = cfg.working_area.join("ws-c.workspace.json");
    let text = std::fs::read_to_string(&state)
        .expect("state")
        .replace("AVAILABLE", "SETTING_UP");
    std::fs::write(&state, text).expect("write");
    let d = Daemon::start(cfg.clone()).await.expect("restart");
    assert!(!content.exists(), "cleaned up at start");
    assert!(!subvolumes(&fs.mnt()).contains("ws-c"));
    assert_qgroup_goes(&fs.mnt(), id);
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_larger_than_the_quota_initializes_and_then_writes_fail() {
    let Some(fs) = btrfs(true) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_on(&fs.mnt(), dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");

    // A 12 MiB full backup of workspace "m-r".
    init(&d, quota_workspace("ws-a", "m-r", 0)).await;
    write_mib(&cfg.working_area.join("ws-a/data"), 12).expect("write");
    dispose(&d, "ws-a", true).await;

    // Restored under an 8 MiB quota: soft during init, hard after.
    init(&d, quota_workspace("ws-b", "m-r", 8 * MIB)).await;
    let content = cfg.working_area.join("ws-b");
    let restored = std::fs::metadata(content.join("data")).expect("restored");
    assert_eq!(restored.len(), 12 * MIB);
    // The next write fails, before anything was synced.
    assert_over_quota(write_mib(&content.join("more"), 1));
    let id = subvolume_id(&content);
    run(
        "btrfs",
        &["filesystem", "sync", &fs.mnt().to_string_lossy()],
    )
    .expect("sync");
    let (referenced, limit) = qgroup(&fs.mnt(), id).expect("qgroup");
    assert_eq!(limit, Some(8 * MIB));
    assert!(referenced > 8 * MIB, "over the quota: {referenced}");

    dispose(&d, "ws-b", false).await;
    assert_qgroup_goes(&fs.mnt(), id);
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btrfs_with_quotas_off_runs_without_them_unless_the_daemon_may_enable_them() {
    let Some(fs) = btrfs(false) else { return };
    let area = fs.mnt().join("area");
    std::fs::create_dir(&area).expect("mkdir");
    let off = Quota::probe(&area, &QuotaConfig::default());
    assert_eq!(off.backend_name(), "none");
    let content = area.join("ws-off");
    off.create_folder(&content, 8 * MIB).expect("create");
    off.enforce("ws-off", &content, 8 * MIB)
        .expect("not enforced");
    write_mib(&content.join("big"), 16).expect("no limit");
    off.remove_folder(&content).expect("remove");
    assert!(!content.exists());

    let on = Quota::probe(&area, &QuotaConfig { btrfs_enable: true });
    assert_eq!(on.backend_name(), "btrfs-qgroup");
    run("btrfs", &["qgroup", "show", &fs.mnt().to_string_lossy()]).expect("quotas are enabled now");
    on.create_folder(&content, 8 * MIB).expect("create");
    on.enforce("ws-off", &content, 8 * MIB).expect("enforce");
    assert_over_quota(write_mib(&content.join("big"), 16));
    on.remove_folder(&content).expect("remove");
    assert!(!content.exists());
}

/// tmpfs mounted on a temporary folder; unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run("umount", &[&self.0.path().to_string_lossy()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_area_without_quotas_says_so_once_and_initializes() {
    if !is_root() {
        println!("skipped: mounting tmpfs needs root");
        return;
    }
    let mnt = Tmpfs(tempfile::tempdir().expect("tempdir"));
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=64m",
            "wsd-quota-test",
            &mnt.0.path().to_string_lossy(),
        ],
    )
    .expect("mount tmpfs");

    let quota = Quota::probe(mnt.0.path(), &QuotaConfig::default());
    assert_eq!(quota.backend_name(), "none");
    assert!(quota.not_enforced("a", "why"), "the first one is logged");
    assert!(!quota.not_enforced("b", "why"), "later ones are not");

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_on(mnt.0.path(), dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");
    for id in ["ws-t1", "ws-t2"] {
        init(&d, quota_workspace(id, id, 8 * MIB)).await;
        write_mib(&cfg.working_area.join(id).join("big"), 16).expect("no quota here");
        dispose(&d, id, false).await;
    }
    d.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn xfs_project_quota_where_the_kernel_has_it() {
    let fs = match LoopMount::new("mkfs.xfs", &["-q", "-f"], "320M", "prjquota") {
        Ok(fs) => fs,
        Err(why) => {
            // XFS without project quotas: an area without a quota backend.
            if let Ok(plain) = LoopMount::new("mkfs.xfs", &["-q", "-f"], "320M", "rw") {
                let quota = Quota::probe(&plain.mnt(), &QuotaConfig::default());
                assert_eq!(quota.backend_name(), "none", "{quota:?}");
                println!("XFS without prjquota: {quota:?}");
            }
            println!("skipped: no XFS project quotas here (see the kernel log): {why}");
            return;
        }
    };
    let area = fs.mnt().join("area");
    std::fs::create_dir(&area).expect("mkdir");
    let quota = Quota::probe(&area, &QuotaConfig::default());
    if quota.backend_name() != "xfs-project" {
        println!("skipped: XFS mounted, but {quota:?}");
        return;
    }
    let content = area.join("ws-x");
    quota.create_folder(&content, 8 * MIB).expect("create");
    let projid = xfs::get_xattr(open_dir(&content).expect("open").as_fd())
        .expect("xattr")
        .projid;
    assert!(PROJECT_IDS.contains(&projid));
    write_mib(&content.join("before"), 12).expect("soft during init");
    quota.enforce("ws-x", &content, 8 * MIB).expect("enforce");
    assert_over_quota(write_mib(&content.join("after"), 1));
    quota.remove_folder(&content).expect("remove");
    assert!(!content.exists());
}
