//! The workspace cgroups: the order of the steps against a model of the kernel's cgroup v2 rules
//! (no root needed), then for real on this node's v2 hierarchy (as root).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::IwsConfig;
use crate::iws::cgroups::{self, CgroupFs, Place};
use crate::runtime::Container;

// ---------------------------------------------------------------------------------------------
// A model of cgroupfs v2 with the rules that matter here.

#[derive(Default, Clone)]
struct Node {
    procs: Vec<i32>,
    subtree: Vec<String>,
}

/// cgroup v2 as the kernel keeps it: a process is in exactly one cgroup; a cgroup other than the
/// root takes processes only without controllers enabled for its children, and enables them
/// only without processes (EBUSY); a controller cannot be turned off while a child enables it;
/// rmdir only of a cgroup without processes and children.
struct Model {
    root: PathBuf,
    available: Vec<String>,
    nodes: RefCell<BTreeMap<PathBuf, Node>>,
    /// Listed processes that end before they are moved (ESRCH).
    ending: RefCell<HashSet<i32>>,
    /// A process that appears in a cgroup just before its controllers are first enabled.
    arriving: RefCell<Option<(PathBuf, i32)>>,
    owners: RefCell<HashMap<PathBuf, (u32, u32)>>,
    log: RefCell<Vec<String>>,
}

const FILES: [&str; 4] = [
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.subtree_control",
    "cgroup.controllers",
];

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl Model {
    fn new() -> Model {
        let root = PathBuf::from("/fake/cg");
        let mut nodes = BTreeMap::new();
        nodes.insert(root.clone(), Node::default());
        Model {
            root,
            available: vec!["cpu".into(), "memory".into(), "pids".into()],
            nodes: RefCell::new(nodes),
            ending: RefCell::default(),
            arriving: RefCell::default(),
            owners: RefCell::default(),
            log: RefCell::default(),
        }
    }

    /// A container cgroup `/c1` (the root enables everything for it) holding `pids`.
    fn with_container(pids: &[i32]) -> (Model, Place) {
        let m = Model::new();
        m.nodes.borrow_mut().get_mut(&m.root).expect("root").subtree = m.available.clone();
        m.add("c1", pids);
        let place = Place {
            mount: m.root.clone(),
            cgroup: "/c1".into(),
        };
        (m, place)
    }

    fn add(&self, rel: &str, pids: &[i32]) {
        self.nodes.borrow_mut().insert(
            self.root.join(rel),
            Node {
                procs: pids.to_vec(),
                ..Node::default()
            },
        );
    }

    fn node(&self, rel: &str) -> Option<Node> {
        self.nodes.borrow().get(&self.root.join(rel)).cloned()
    }

    fn procs(&self, rel: &str) -> Vec<i32> {
        let mut p = self.node(rel).map(|n| n.procs).unwrap_or_default();
        p.sort_unstable();
        p
    }

    fn subtree(&self, rel: &str) -> Vec<String> {
        self.node(rel).map(|n| n.subtree).unwrap_or_default()
    }

    fn rel(&self, dir: &Path) -> String {
        dir.strip_prefix(&self.root)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn controllers_of(&self, dir: &Path) -> Vec<String> {
        if dir == self.root {
            return self.available.clone();
        }
        let parent = dir.parent().expect("parent");
        self.nodes
            .borrow()
            .get(parent)
            .map(|n| n.subtree.clone())
            .unwrap_or_default()
    }

    fn children(&self, dir: &Path) -> Vec<PathBuf> {
        self.nodes
            .borrow()
            .keys()
            .filter(|k| k.parent() == Some(dir))
            .cloned()
            .collect()
    }

    fn split(file: &Path) -> (PathBuf, String) {
        let dir = file.parent().expect("a file in a folder").to_path_buf();
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        (dir, name)
    }
}

impl CgroupFs for Model {
    fn read(&self, file: &Path) -> io::Result<String> {
        let (dir, name) = Model::split(file);
        let node = self
            .nodes
            .borrow()
            .get(&dir)
            .cloned()
            .ok_or_else(|| errno(libc::ENOENT))?;
        match name.as_str() {
            "cgroup.procs" => Ok(node
                .procs
                .iter()
                .map(|p| format!("{p}\n"))
                .collect::<String>()),
            "cgroup.subtree_control" => Ok(node.subtree.join(" ") + "\n"),
            "cgroup.controllers" => Ok(self.controllers_of(&dir).join(" ") + "\n"),
            _ => Err(errno(libc::ENOENT)),
        }
    }

    fn write(&self, file: &Path, text: &str) -> io::Result<()> {
        let (dir, name) = Model::split(file);
        if !self.nodes.borrow().contains_key(&dir) {
            return Err(errno(libc::ENOENT));
        }
        let is_root = dir == self.root;
        match name.as_str() {
            "cgroup.procs" => {
                let pid: i32 = text.trim().parse().map_err(|_| errno(libc::EINVAL))?;
                let mut nodes = self.nodes.borrow_mut();
                if self.ending.borrow_mut().remove(&pid) {
                    for n in nodes.values_mut() {
                        n.procs.retain(|p| *p != pid);
                    }
                    return Err(errno(libc::ESRCH));
                }
                if !is_root && !nodes[&dir].subtree.is_empty() {
                    return Err(errno(libc::EBUSY));
                }
                for n in nodes.values_mut() {
                    n.procs.retain(|p| *p != pid);
                }
                nodes.get_mut(&dir).expect("checked").procs.push(pid);
                self.log
                    .borrow_mut()
                    .push(format!("move {pid} to {}", self.rel(&dir)));
                Ok(())
            }
            "cgroup.subtree_control" => {
                let arrived = self
                    .arriving
                    .borrow_mut()
                    .take_if(|(at, _)| *at == dir)
                    .map(|(_, pid)| pid);
                if let Some(pid) = arrived {
                    self.nodes
                        .borrow_mut()
                        .get_mut(&dir)
                        .expect("checked")
                        .procs
                        .push(pid);
                }
                let (sign, controller) = text.split_at(1);
                let controller = controller.trim().to_string();
                if sign == "+" {
                    if !self.controllers_of(&dir).contains(&controller) {
                        return Err(errno(libc::ENOENT));
                    }
                    let mut nodes = self.nodes.borrow_mut();
                    let node = nodes.get_mut(&dir).expect("checked");
                    if !is_root && !node.procs.is_empty() {
                        return Err(errno(libc::EBUSY));
                    }
                    if !node.subtree.contains(&controller) {
                        node.subtree.push(controller.clone());
                    }
                } else {
                    let busy = self
                        .children(&dir)
                        .iter()
                        .any(|c| self.nodes.borrow()[c].subtree.contains(&controller));
                    if busy {
                        return Err(errno(libc::EBUSY));
                    }
                    let mut nodes = self.nodes.borrow_mut();
                    nodes
                        .get_mut(&dir)
                        .expect("checked")
                        .subtree
                        .retain(|s| *s != controller);
                }
                self.log
                    .borrow_mut()
                    .push(format!("{sign}{controller} in {}", self.rel(&dir)));
                Ok(())
            }
            _ => Err(errno(libc::EACCES)),
        }
    }

    fn is_dir(&self, dir: &Path) -> bool {
        self.nodes.borrow().contains_key(dir)
    }

    fn make_dir(&self, dir: &Path) -> io::Result<()> {
        if self.is_dir(dir) {
            return Err(errno(libc::EEXIST));
        }
        if !self.is_dir(dir.parent().expect("parent")) {
            return Err(errno(libc::ENOENT));
        }
        self.nodes
            .borrow_mut()
            .insert(dir.to_path_buf(), Node::default());
        self.log
            .borrow_mut()
            .push(format!("mkdir {}", self.rel(dir)));
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let node = self
            .nodes
            .borrow()
            .get(dir)
            .cloned()
            .ok_or_else(|| errno(libc::ENOENT))?;
        if !node.procs.is_empty() || !self.children(dir).is_empty() {
            return Err(errno(libc::EBUSY));
        }
        self.nodes.borrow_mut().remove(dir);
        self.log
            .borrow_mut()
            .push(format!("rmdir {}", self.rel(dir)));
        Ok(())
    }

    fn subdirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        if !self.is_dir(dir) {
            return Err(errno(libc::ENOENT));
        }
        Ok(self.children(dir))
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        let exists = self.is_dir(path)
            || (FILES.iter().any(|f| path.ends_with(f))
                && self.is_dir(path.parent().expect("parent")));
        if !exists {
            return Err(errno(libc::ENOENT));
        }
        self.owners
            .borrow_mut()
            .insert(path.to_path_buf(), (uid, gid));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Without root: the rules and the order of the steps.

#[test]
fn the_container_cgroup_is_found_without_our_own_suffixes() {
    use cgroups::container_cgroup as found;
    let some = |s: &str| Some(s.to_string());
    // Before PrepareForUserNS, after it, after EvacuateCGroup, below the delegated `user`.
    assert_eq!(found("/c1", Some("/c1")), some("/c1"));
    assert_eq!(found("/c1", Some("/c1/workspace")), some("/c1"));
    assert_eq!(found("/c1", Some("/c1/workspace/user")), some("/c1"));
    assert_eq!(found("/c1", Some("/c1/workspace/user/a/b")), some("/c1"));
    // Re-attached after a restart: the record was read from /proc after the move.
    assert_eq!(
        found("/c1/workspace/user", Some("/c1/workspace/user")),
        some("/c1")
    );
    assert_eq!(found("", Some("/c1/workspace")), some("/c1"));
    // A v1 path recorded on a hybrid node: the init's v2 path decides.
    assert_eq!(
        found("/kubepods/v1/c1", Some("/system.slice/c1/workspace/user")),
        some("/system.slice/c1")
    );
    // A `workspace` component that is not ours stays.
    assert_eq!(
        found(
            "/kubepods/workspace/pod/c1",
            Some("/kubepods/workspace/pod/c1/workspace/user")
        ),
        some("/kubepods/workspace/pod/c1")
    );
    // The init is gone (teardown after the container stopped): the record, without ours.
    assert_eq!(found("/c1/workspace", None), some("/c1"));
    assert_eq!(found("/c1", None), some("/c1"));
    assert_eq!(found("", None), None);
    assert_eq!(found("/", Some("/")), some("/"));
}

const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
const PURE_V1: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";

#[test]
fn the_v2_hierarchy_is_configured_or_detected_and_a_wrong_setting_is_refused() {
    let detected = IwsConfig::default();
    assert_eq!(
        cgroups::v2_mount(&detected, HYBRID).expect("hybrid"),
        Some(PathBuf::from("/sys/fs/cgroup/unified"))
    );
    assert_eq!(cgroups::v2_mount(&detected, PURE_V1).expect("v1"), None);

    let not_cgroup2 = tempfile::tempdir().expect("tempdir");
    let mut configured = IwsConfig::default();
    configured.cgroup.v2_mount = Some(not_cgroup2.path().to_path_buf());
    let err = cgroups::v2_mount(&configured, HYBRID).expect_err("a plain folder");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.to_string().contains("iws.cgroup.v2_mount"), "{err}");
    assert!(
        !err.to_string()
            .contains(&not_cgroup2.path().display().to_string()),
        "{err}"
    );

    let mut relative = IwsConfig::default();
    relative.cgroup.v2_mount = Some(PathBuf::from("sys/fs/cgroup"));
    assert!(relative.check().expect_err("relative").contains("absolute"));
}

#[test]
fn processes_move_into_the_workspace_cgroup_before_controllers_are_enabled() {
    let (m, place) = Model::with_container(&[10, 11, 12]);
    cgroups::make_in(&m, &place).expect("workspace cgroup");
    assert_eq!(m.procs("c1"), Vec::<i32>::new());
    assert_eq!(m.procs("c1/workspace"), vec![10, 11, 12]);
    assert_eq!(m.subtree("c1"), vec!["cpu", "memory", "pids"]);
    assert_eq!(
        *m.log.borrow(),
        [
            "mkdir c1/workspace",
            "move 10 to c1/workspace",
            "move 11 to c1/workspace",
            "move 12 to c1/workspace",
            "+cpu in c1",
            "+memory in c1",
            "+pids in c1",
        ],
        "every move before the first enable"
    );

    // Again: nothing changes, no error.
    m.log.borrow_mut().clear();
    cgroups::make_in(&m, &place).expect("again");
    assert!(m.log.borrow().is_empty(), "{:?}", m.log.borrow());
    assert_eq!(m.procs("c1/workspace"), vec![10, 11, 12]);
}

#[test]
fn processes_that_end_or_arrive_during_the_move_are_handled() {
    let (m, place) = Model::with_container(&[10, 11]);
    m.ending.borrow_mut().insert(11);
    // Forked after the move, before the enable: the kernel says EBUSY, it is moved too.
    *m.arriving.borrow_mut() = Some((m.root.join("c1"), 12));
    cgroups::make_in(&m, &place).expect("workspace cgroup");
    assert_eq!(m.procs("c1"), Vec::<i32>::new());
    assert_eq!(m.procs("c1/workspace"), vec![10, 12]);
    assert_eq!(m.subtree("c1"), vec!["cpu", "memory", "pids"]);
}

#[test]
fn evacuation_makes_user_enables_controllers_and_hands_over_eight_entries() {
    let (m, place) = Model::with_container(&[10, 11]);
    cgroups::make_in(&m, &place).expect("workspace cgroup");
    cgroups::evacuate_in(&m, &place, 33333, 33334).expect("evacuate");
    assert_eq!(m.procs("c1/workspace"), Vec::<i32>::new());
    assert_eq!(m.procs("c1/workspace/user"), vec![10, 11]);
    assert_eq!(m.subtree("c1/workspace"), vec!["cpu", "memory", "pids"]);
    let owners = m.owners.borrow();
    let mut handed: Vec<String> = owners.keys().map(|p| m.rel(p)).collect();
    handed.sort();
    assert_eq!(
        handed,
        [
            "c1/workspace",
            "c1/workspace/cgroup.procs",
            "c1/workspace/cgroup.subtree_control",
            "c1/workspace/cgroup.threads",
            "c1/workspace/user",
            "c1/workspace/user/cgroup.procs",
            "c1/workspace/user/cgroup.subtree_control",
            "c1/workspace/user/cgroup.threads",
        ]
    );
    assert!(owners.values().all(|ids| *ids == (33333, 33334)));
    drop(owners);

    // Again: nothing moves, nothing is enabled.
    m.log.borrow_mut().clear();
    cgroups::evacuate_in(&m, &place, 33333, 33334).expect("again");
    assert!(m.log.borrow().is_empty(), "{:?}", m.log.borrow());

    // A process that joined the container cgroup since (an exec) goes to `user`.
    m.nodes
        .borrow_mut()
        .get_mut(&m.root.join("c1"))
        .expect("c1")
        .procs
        .push(20);
    cgroups::make_in(&m, &place).expect("again with a newcomer");
    assert_eq!(m.procs("c1/workspace/user"), vec![10, 11, 20]);
}

#[test]
fn evacuation_without_prepare_makes_the_workspace_cgroup_first() {
    let (m, place) = Model::with_container(&[10]);
    cgroups::evacuate_in(&m, &place, 1, 2).expect("evacuate");
    assert_eq!(m.procs("c1"), Vec::<i32>::new());
    assert_eq!(m.procs("c1/workspace/user"), vec![10]);
    assert_eq!(m.subtree("c1"), vec!["cpu", "memory", "pids"]);
}

#[test]
fn a_container_in_the_root_cgroup_or_gone_is_refused_without_host_paths() {
    let (m, _) = Model::with_container(&[10]);
    let root = Place {
        mount: m.root.clone(),
        cgroup: "/".into(),
    };
    let err = cgroups::make_in(&m, &root).expect_err("root cgroup");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.to_string().contains("root cgroup"), "{err}");
    let err = cgroups::evacuate_in(&m, &root, 1, 1).expect_err("root cgroup");
    assert_eq!(err.code(), Code::FailedPrecondition);
    cgroups::remove_in(&m, &root).expect("nothing of ours there");
    assert!(m.log.borrow().is_empty(), "the root was not touched");

    let gone = Place {
        mount: m.root.clone(),
        cgroup: "/c2".into(),
    };
    let err = cgroups::make_in(&m, &gone).expect_err("no such cgroup");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(!err.to_string().contains("/fake"), "{err}");

    // Seen from another cgroup namespace: the path climbs out of the mount.
    let outside = Place {
        mount: m.root.clone(),
        cgroup: "/../../c1".into(),
    };
    for err in [
        cgroups::make_in(&m, &outside).expect_err("outside"),
        cgroups::evacuate_in(&m, &outside, 1, 1).expect_err("outside"),
        cgroups::remove_in(&m, &outside).expect_err("outside"),
    ] {
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.to_string().contains("cgroup namespace"), "{err}");
    }
    assert!(m.log.borrow().is_empty(), "nothing was touched");
}

#[test]
fn removal_returns_every_process_and_removes_the_tree_children_first() {
    let (m, place) = Model::with_container(&[10, 11]);
    cgroups::evacuate_in(&m, &place, 1, 1).expect("evacuate");
    // The workspace's root made a tree of its own below `user`, with controllers enabled.
    m.write(&m.root.join("c1/workspace/user/cgroup.procs"), "10")
        .expect("stays");
    m.make_dir(&m.root.join("c1/workspace/user/a")).expect("a");
    m.make_dir(&m.root.join("c1/workspace/user/a/b"))
        .expect("b");
    m.write(&m.root.join("c1/workspace/user/a/b/cgroup.procs"), "10")
        .expect("10 into b");
    m.write(&m.root.join("c1/workspace/user/a/b/cgroup.procs"), "11")
        .expect("11 into b");
    m.write(
        &m.root.join("c1/workspace/user/cgroup.subtree_control"),
        "+memory",
    )
    .expect("user enables memory");
    m.write(
        &m.root.join("c1/workspace/user/a/cgroup.subtree_control"),
        "+memory",
    )
    .expect("a enables memory");

    cgroups::remove_in(&m, &place).expect("remove");
    assert_eq!(m.procs("c1"), vec![10, 11]);
    assert!(m.node("c1/workspace").is_none());
    assert_eq!(m.subtree("c1"), Vec::<String>::new());
    let rmdirs: Vec<String> = m
        .log
        .borrow()
        .iter()
        .filter_map(|l| l.strip_prefix("rmdir ").map(str::to_string))
        .collect();
    assert_eq!(
        rmdirs,
        [
            "c1/workspace/user/a/b",
            "c1/workspace/user/a",
            "c1/workspace/user",
            "c1/workspace"
        ]
    );

    // Again, and on a container that never had one: nothing to do.
    m.log.borrow_mut().clear();
    cgroups::remove_in(&m, &place).expect("again");
    assert!(m.log.borrow().is_empty(), "{:?}", m.log.borrow());
}

#[test]
fn removal_works_once_the_container_processes_are_gone() {
    let (m, place) = Model::with_container(&[10]);
    cgroups::evacuate_in(&m, &place, 1, 1).expect("evacuate");
    m.nodes
        .borrow_mut()
        .get_mut(&m.root.join("c1/workspace/user"))
        .expect("user")
        .procs
        .clear();
    cgroups::remove_in(&m, &place).expect("remove");
    assert!(m.node("c1/workspace").is_none());
    assert!(m.node("c1").is_some(), "the container cgroup stays");
}

#[test]
fn without_a_v2_hierarchy_evacuation_succeeds_doing_nothing() {
    let (m, _) = Model::with_container(&[10]);
    let place = cgroups::v2_mount(&IwsConfig::default(), PURE_V1)
        .expect("v1")
        .map(|mount| Place {
            mount,
            cgroup: "/c1".into(),
        });
    assert_eq!(place, None);
    cgroups::evacuate_at(&m, place, 1, 1).expect("nothing to do");
    assert!(m.log.borrow().is_empty());
    assert!(m.owners.borrow().is_empty());
    assert_eq!(m.procs("c1"), vec![10]);
}

// ---------------------------------------------------------------------------------------------
// As root, on this node's v2 hierarchy.

fn v2_line(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("cgroup")
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .expect("a v2 line")
}

#[test]
fn workspace_cgroups_are_made_evacuated_and_removed_for_real() {
    let _one = REAL.blocking_lock();
    let name = format!("wsd-test-cg-{}", std::process::id());
    let cg = TestV2Cgroup::create(&name);
    let mut container = TestContainer::start();
    cg.enter(container.pid);
    let child = container.spawn_inside_after(&cg.join_command(), &["sleep", "600"]);
    let mut all = vec![container.pid, child];
    all.sort_unstable();
    assert_eq!(cg.procs(""), all, "both in the container cgroup");
    let config = IwsConfig::default();
    let attached = Container::open(container.pid.into(), "", None).expect("container");
    assert_eq!(attached.record().cgroup_path, format!("/{name}"));

    cgroups::make_workspace_cgroup(&attached, &config).expect("workspace cgroup");
    assert_eq!(cg.procs(""), Vec::<i32>::new());
    assert_eq!(cg.procs("workspace"), all);
    assert!(cg
        .words("", "cgroup.subtree_control")
        .contains(&"hugetlb".to_string()));
    assert_eq!(v2_line(container.pid), format!("/{name}/workspace"));

    // Again, and as after a restart that attached the container anew (the record is read from
    // /proc, where the init is in `workspace` now): the same, no workspace/workspace.
    cgroups::make_workspace_cgroup(&attached, &config).expect("again");
    let reattached = Container::open(container.pid.into(), "", None).expect("container");
    assert_eq!(
        reattached.record().cgroup_path,
        format!("/{name}/workspace")
    );
    cgroups::make_workspace_cgroup(&reattached, &config).expect("after a restart");
    assert!(!cg.dir.join("workspace/workspace").exists());
    assert_eq!(cg.procs("workspace"), all);

    cgroups::evacuate(&reattached, &config, 43210, 43211).expect("evacuate");
    assert_eq!(cg.procs("workspace"), Vec::<i32>::new());
    assert_eq!(cg.procs("workspace/user"), all);
    assert_eq!(v2_line(child), format!("/{name}/workspace/user"));
    assert!(cg
        .words("workspace", "cgroup.subtree_control")
        .contains(&"hugetlb".to_string()));
    for entry in [
        "",
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
    ] {
        for group in ["workspace", "workspace/user"] {
            let rel = format!("{group}/{entry}");
            assert_eq!(cg.owner(&rel), (43210, 43211), "{rel}");
        }
    }
    // Nothing else was handed over.
    for rel in [
        "",
        "cgroup.procs",
        "workspace/cgroup.max.depth",
        "workspace/cgroup.type",
        "workspace/user/cgroup.max.descendants",
        "workspace/user/hugetlb.2MB.max",
    ] {
        assert_eq!(cg.owner(rel), (0, 0), "{rel}");
    }

    // The init as the (re)attached container still sees it: back into the container cgroup.
    cgroups::remove_workspace_cgroup(&reattached, &config).expect("remove");
    assert_eq!(cg.procs(""), all);
    assert!(!cg.dir.join("workspace").exists());
    assert_eq!(cg.words("", "cgroup.subtree_control"), Vec::<String>::new());
    cgroups::remove_workspace_cgroup(&reattached, &config).expect("again");

    // Made again, then the container stops: removal goes by the record.
    cgroups::evacuate(&attached, &config, 43210, 43211).expect("evacuate again");
    assert_eq!(cg.procs("workspace/user"), all);
    container.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cg.procs("workspace/user").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(cg.procs("workspace/user"), Vec::<i32>::new(), "all gone");
    cgroups::remove_workspace_cgroup(&attached, &config).expect("remove after the stop");
    assert!(!cg.dir.join("workspace").exists());
    assert!(cg.dir.exists(), "the container cgroup is the runtime's");
    drop(container);
    drop(cg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuate_cgroup_is_served_once_per_workspace() {
    use wsd_proto::iws::{EvacuateCGroupRequest, EvacuateCGroupResponse};
    let _one = REAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let cg = TestV2Cgroup::create(&format!("wsd-test-cg-svc-{}", std::process::id()));
    let container = TestContainer::start();
    cg.enter(container.pid);
    workspace(&d, "ws-cg").await;
    attach(&d, "ws-cg", container.pid).await;
    let ctx = from("ws-cg", container.pid);
    let method = "iws.InWorkspaceService/EvacuateCGroup";
    let _: EvacuateCGroupResponse = call(&d, method, EvacuateCGroupRequest {}, &ctx)
        .await
        .expect("evacuate");
    assert_eq!(cg.procs("workspace/user"), vec![container.pid]);
    // The configured root ids (defaults: 33333 for both).
    let root = d.config().iws.uid_map.root_range.start;
    let root_gid = d.config().iws.gid_map.root_range.start;
    assert_eq!(cg.owner("workspace/user"), (root, root_gid));
    assert_eq!(cg.owner("workspace/cgroup.procs"), (root, root_gid));
    let again = call::<EvacuateCGroupResponse>(&d, method, EvacuateCGroupRequest {}, &ctx)
        .await
        .expect_err("once only");
    assert_eq!(again.code(), Code::ResourceExhausted);

    let attached = Container::open(container.pid.into(), "", None).expect("container");
    cgroups::remove_workspace_cgroup(&attached, &IwsConfig::default()).expect("remove");
    drop(container);
    d.shutdown(Duration::from_secs(1)).await;
    drop(cg);
}
