//! The git initializer against a real git server (git http-backend on loopback, basic auth):
//! clone modes, shallow and full, upstream, submodules, custom config, auth failures, one-time
//! secrets, missing repositories, retries, refused injections, git status on dispose, prebuilds,
//! and no secret in anything the daemon writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tonic::Code;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{
    CloneTargetMode, GitAuthMethod, GitConfig, GitInitializer, PrebuildInitializer,
    SnapshotInitializer,
};
use wsd_proto::wsdaemon::{DisposeWorkspaceRequest, TakeSnapshotRequest};
use wsd_tests::git_server::{git, GitServer};
use wsd_tests::{init_request, Client, DaemonProcess};

const USER: &str = "alice";
const PASSWORD: &str = "pa55-w0rd-s3cret";

/// Bare repositories under `root`: `repo.git` (main with 3 commits, branch `feature`),
/// `sub.git`, `with-sub.git` (a submodule of sub.git), `upstream.git`.
fn make_repos(root: &Path, server_url: &str) -> HashMap<&'static str, String> {
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let mut commits = HashMap::new();
    let new_repo = |name: &str| {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        git(&dir, &["init", "-q"]);
        dir
    };
    let repo = new_repo("repo");
    for i in 1..=3 {
        std::fs::write(repo.join("file.txt"), format!("version {i}\n")).expect("write");
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-qm", &format!("commit {i}")]);
        if i == 1 {
            commits.insert("first", git(&repo, &["rev-parse", "HEAD"]));
        }
    }
    commits.insert("main", git(&repo, &["rev-parse", "HEAD"]));
    git(&repo, &["checkout", "-qb", "feature"]);
    std::fs::write(repo.join("feature.txt"), "feature\n").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "feature"]);
    commits.insert("feature", git(&repo, &["rev-parse", "HEAD"]));
    git(&repo, &["checkout", "-q", "main"]);

    let sub = new_repo("sub");
    std::fs::write(sub.join("sub.txt"), "in the submodule\n").expect("write");
    git(&sub, &["add", "."]);
    git(&sub, &["commit", "-qm", "sub"]);

    let upstream = new_repo("upstream");
    std::fs::write(upstream.join("up.txt"), "upstream\n").expect("write");
    git(&upstream, &["add", "."]);
    git(&upstream, &["commit", "-qm", "upstream"]);

    for name in ["repo", "sub", "upstream"] {
        git(
            root,
            &[
                "clone",
                "-q",
                "--bare",
                work.join(name).to_str().expect("utf-8"),
                &format!("{name}.git"),
            ],
        );
    }
    let with_sub = new_repo("with-sub");
    std::fs::write(with_sub.join("main.txt"), "main\n").expect("write");
    git(&with_sub, &["add", "."]);
    git(
        &with_sub,
        &[
            "-c",
            "protocol.http.allow=always",
            "submodule",
            "add",
            "-q",
            &format!("{server_url}/sub.git"),
            "vendor/sub",
        ],
    );
    git(&with_sub, &["commit", "-qm", "with submodule"]);
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            with_sub.to_str().expect("utf-8"),
            "with-sub.git",
        ],
    );
    commits
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    server: GitServer,
    /// Serves the same repositories without auth; submodule URLs point at it.
    _plain: GitServer,
    daemon: DaemonProcess,
    commits: HashMap<&'static str, String>,
}

async fn setup(auth: bool) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let repos = dir.path().join("repos");
    std::fs::create_dir_all(&repos).expect("mkdir");
    // Submodule URLs need a server address before the repositories exist.
    let plain = GitServer::start(&repos, None).await;
    let commits = make_repos(&repos, &format!("http://{}", plain.addr));
    let server = GitServer::start(
        &repos,
        auth.then(|| format!("{USER}:{PASSWORD}")).as_deref(),
    )
    .await;
    let daemon =
        DaemonProcess::start(&dir.path().join("node"), "[git]\nclone_attempts = 3\n").await;
    Setup {
        root: dir.path().to_path_buf(),
        _dir: dir,
        server,
        _plain: plain,
        daemon,
        commits,
    }
}

fn git_init(url: &str, mode: CloneTargetMode, target: &str, auth: Option<GitConfig>) -> Spec {
    Spec::Git(GitInitializer {
        remote_uri: url.to_string(),
        target_mode: mode as i32,
        clone_taget: target.to_string(),
        checkout_location: "repo".into(),
        config: Some(auth.unwrap_or_default()),
        ..GitInitializer::default()
    })
}

fn basic(user: &str, password: &str) -> GitConfig {
    GitConfig {
        authentication: GitAuthMethod::BasicAuth as i32,
        auth_user: user.into(),
        auth_password: password.into(),
        ..GitConfig::default()
    }
}

fn checkout(d: &DaemonProcess, id: &str) -> PathBuf {
    d.working_area().join(id).join("repo")
}

async fn init(c: &mut Client, id: &str, spec: Spec) -> Result<(), tonic::Status> {
    c.init_workspace(init_request(id, &format!("meta-{id}"), spec))
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn clone_modes_shallow_and_full() {
    let s = setup(true).await;
    let mut c = s.daemon.client().await;
    let url = s.server.url("repo.git");
    let auth = || Some(basic(USER, PASSWORD));

    init(
        &mut c,
        "head",
        git_init(&url, CloneTargetMode::RemoteHead, "", auth()),
    )
    .await
    .expect("remote head");
    let co = checkout(&s.daemon, "head");
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), s.commits["main"]);
    assert_eq!(git(&co, &["rev-parse", "--is-shallow-repository"]), "true");
    assert_eq!(git(&co, &["rev-list", "--count", "HEAD"]), "1");

    let mut full = GitInitializer {
        full_clone: true,
        ..Default::default()
    };
    if let Spec::Git(g) = git_init(&url, CloneTargetMode::RemoteHead, "", auth()) {
        full = GitInitializer {
            full_clone: true,
            ..g
        };
    }
    init(&mut c, "full", Spec::Git(full))
        .await
        .expect("full clone");
    let co = checkout(&s.daemon, "full");
    assert_eq!(git(&co, &["rev-parse", "--is-shallow-repository"]), "false");
    assert_eq!(git(&co, &["rev-list", "--count", "HEAD"]), "3");

    init(
        &mut c,
        "branch",
        git_init(&url, CloneTargetMode::RemoteBranch, "feature", auth()),
    )
    .await
    .expect("remote branch");
    let co = checkout(&s.daemon, "branch");
    assert_eq!(git(&co, &["rev-parse", "--abbrev-ref", "HEAD"]), "feature");
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), s.commits["feature"]);

    init(
        &mut c,
        "newbranch",
        git_init(
            &url,
            CloneTargetMode::RemoteBranch,
            "does-not-exist",
            auth(),
        ),
    )
    .await
    .expect("missing branch");
    let co = checkout(&s.daemon, "newbranch");
    assert_eq!(
        git(&co, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "does-not-exist"
    );
    assert_eq!(
        git(&co, &["rev-parse", "HEAD"]),
        s.commits["main"],
        "the default branch under the requested name"
    );

    init(
        &mut c,
        "local",
        git_init(&url, CloneTargetMode::LocalBranch, "my-work", auth()),
    )
    .await
    .expect("local branch");
    let co = checkout(&s.daemon, "local");
    assert_eq!(git(&co, &["rev-parse", "--abbrev-ref", "HEAD"]), "my-work");
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), s.commits["main"]);

    init(
        &mut c,
        "commit",
        git_init(
            &url,
            CloneTargetMode::RemoteCommit,
            &s.commits["first"],
            auth(),
        ),
    )
    .await
    .expect("remote commit");
    let co = checkout(&s.daemon, "commit");
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), s.commits["first"]);
    assert_eq!(
        git(&co, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "HEAD",
        "detached"
    );

    // Every clone mode produced a working copy and a ready file.
    for id in ["head", "full", "branch", "newbranch", "local", "commit"] {
        assert!(checkout(&s.daemon, id).join(".git").is_dir(), "{id}");
        let ready = std::fs::read_to_string(s.daemon.working_area().join(id).join(".gitpod/ready"))
            .expect("ready");
        assert!(ready.contains("from-other"), "{ready}");
    }
    assert_no_secret(&s, PASSWORD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn upstream_submodules_and_custom_config() {
    let s = setup(false).await;
    let mut c = s.daemon.client().await;
    let mut config = GitConfig::default();
    config
        .custom_config
        .insert("user.name".into(), "Workspace User".into());
    config
        .custom_config
        .insert("pull.rebase".into(), "true".into());
    let spec = Spec::Git(GitInitializer {
        remote_uri: s.server.url("repo.git"),
        upstream_remote_uri: s.server.url("upstream.git"),
        checkout_location: "repo".into(),
        config: Some(config),
        ..GitInitializer::default()
    });
    init(&mut c, "up", spec).await.expect("clone with upstream");
    let co = checkout(&s.daemon, "up");
    assert_eq!(
        git(&co, &["config", "--file", ".git/config", "user.name"]),
        "Workspace User"
    );
    assert_eq!(
        git(&co, &["config", "--file", ".git/config", "pull.rebase"]),
        "true"
    );
    assert!(
        !git(&co, &["rev-parse", "refs/remotes/upstream/main"]).is_empty(),
        "upstream fetched"
    );

    let spec = git_init(
        &s.server.url("with-sub.git"),
        CloneTargetMode::RemoteHead,
        "",
        None,
    );
    init(&mut c, "sub", spec)
        .await
        .expect("clone with submodule");
    let co = checkout(&s.daemon, "sub");
    assert_eq!(
        std::fs::read_to_string(co.join("vendor/sub/sub.txt")).expect("submodule file"),
        "in the submodule\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn auth_failures_missing_repos_and_retries() {
    let s = setup(true).await;
    let mut c = s.daemon.client().await;
    let url = s.server.url("repo.git");

    let before = s.server.requests();
    let err = init(
        &mut c,
        "wrong",
        git_init(
            &url,
            CloneTargetMode::RemoteHead,
            "",
            Some(basic(USER, "wrong-password-x")),
        ),
    )
    .await
    .expect_err("wrong password");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("authentication failed"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("wrong-password-x"));
    assert!(
        s.server.requests() - before <= 3,
        "no retry storm: {} requests",
        s.server.requests() - before
    );
    assert!(!s.daemon.working_area().join("wrong").exists());

    let err = init(
        &mut c,
        "missing",
        git_init(
            &s.server.url("nope.git"),
            CloneTargetMode::RemoteHead,
            "",
            Some(basic(USER, PASSWORD)),
        ),
    )
    .await
    .expect_err("missing repo");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("does not exist"),
        "{}",
        err.message()
    );

    s.server.fail_next(2);
    let before = s.server.requests();
    init(
        &mut c,
        "flaky",
        git_init(
            &url,
            CloneTargetMode::RemoteHead,
            "",
            Some(basic(USER, PASSWORD)),
        ),
    )
    .await
    .expect("retried clone");
    assert!(
        s.server.requests() - before >= 3,
        "two failures then success"
    );
    assert!(checkout(&s.daemon, "flaky").join("file.txt").is_file());

    // One-time secret: fetched once, used for every git call of that init.
    let ots = s
        .server
        .one_time_secret("t1", &format!("{USER}:{PASSWORD}"));
    let config = GitConfig {
        authentication: GitAuthMethod::BasicAuthOts as i32,
        auth_ots: ots.clone(),
        ..Default::default()
    };
    init(
        &mut c,
        "ots",
        git_init(
            &url,
            CloneTargetMode::RemoteBranch,
            "feature",
            Some(config.clone()),
        ),
    )
    .await
    .expect("ots clone");
    assert_eq!(s.server.ots_hits(), 1, "the secret is fetched once");
    let err = init(
        &mut c,
        "ots2",
        git_init(&url, CloneTargetMode::RemoteHead, "", Some(config)),
    )
    .await
    .expect_err("used secret");
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Credentials go to the repository's host only: the submodule lives on another server.
    let spec = git_init(
        &s.server.url("with-sub.git"),
        CloneTargetMode::RemoteHead,
        "",
        Some(basic(USER, PASSWORD)),
    );
    init(&mut c, "sub-elsewhere", spec)
        .await
        .expect("clone with a submodule on another host");
    assert!(checkout(&s.daemon, "sub-elsewhere")
        .join("vendor/sub/sub.txt")
        .is_file());
    assert!(s.server.authorizations() > 0);
    assert_eq!(
        s._plain.authorizations(),
        0,
        "the other host never saw the credentials"
    );
    assert_no_secret(&s, PASSWORD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn injections_are_refused_and_run_nothing() {
    let s = setup(false).await;
    let mut c = s.daemon.client().await;
    let marker = s.root.join("pwned");
    let m = marker.to_str().expect("utf-8");
    let url = s.server.url("repo.git");
    let mut cases: Vec<(&str, Spec)> = vec![
        (
            "option-like url",
            git_init(
                &format!("--upload-pack=touch {m}"),
                CloneTargetMode::RemoteHead,
                "",
                None,
            ),
        ),
        (
            "ext transport",
            git_init(
                &format!("ext::sh -c touch% {m}"),
                CloneTargetMode::RemoteHead,
                "",
                None,
            ),
        ),
        (
            "fd transport",
            git_init("fd::17", CloneTargetMode::RemoteHead, "", None),
        ),
        (
            "local path",
            git_init(
                s.root.join("repos/repo.git").to_str().expect("utf-8"),
                CloneTargetMode::RemoteHead,
                "",
                None,
            ),
        ),
        (
            "file url",
            git_init(
                &format!("file://{}", s.root.join("repos/repo.git").display()),
                CloneTargetMode::RemoteHead,
                "",
                None,
            ),
        ),
        (
            "password in the URL",
            git_init(
                &url.replace("http://", "http://u:secret@"),
                CloneTargetMode::RemoteHead,
                "",
                None,
            ),
        ),
        (
            "option-like branch",
            git_init(&url, CloneTargetMode::RemoteBranch, "--upload-pack=x", None),
        ),
        (
            "option-like commit",
            git_init(&url, CloneTargetMode::RemoteCommit, "-x", None),
        ),
    ];
    for key in [
        "core.sshCommand",
        "core.fsmonitor",
        "credential.helper",
        "filter.x.clean",
        "url.file:///.insteadOf",
        "include.path",
        "remote.origin.uploadpack",
    ] {
        let mut config = GitConfig::default();
        config
            .custom_config
            .insert(key.into(), format!("touch {m}"));
        let spec = git_init(&url, CloneTargetMode::RemoteHead, "", Some(config));
        cases.push(("dangerous config", spec));
    }
    let mut upstream_ext = GitInitializer {
        remote_uri: url.clone(),
        upstream_remote_uri: format!("ext::sh -c touch% {m}"),
        config: Some(GitConfig::default()),
        ..Default::default()
    };
    upstream_ext.checkout_location = "repo".into();
    cases.push(("ext upstream", Spec::Git(upstream_ext)));
    for (i, (name, spec)) in cases.into_iter().enumerate() {
        let err = init(&mut c, &format!("inj-{i}"), spec)
            .await
            .expect_err(name);
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{name}: {}",
            err.message()
        );
    }
    assert!(!marker.exists(), "no injected command ran");
    assert_eq!(
        std::fs::read_dir(s.daemon.working_area())
            .expect("ls")
            .filter(|e| e
                .as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("inj-")))
            .count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn dispose_reports_git_status() {
    let s = setup(false).await;
    let mut c = s.daemon.client().await;
    init(
        &mut c,
        "st",
        git_init(
            &s.server.url("repo.git"),
            CloneTargetMode::RemoteHead,
            "",
            None,
        ),
    )
    .await
    .expect("clone");
    let co = checkout(&s.daemon, "st");
    std::fs::write(co.join("file.txt"), "changed\n").expect("modify");
    std::fs::write(co.join("name with spaces.txt"), "u").expect("untracked");
    std::fs::write(co.join("new\nline.txt"), "u").expect("untracked");
    git(&co, &["checkout", "-qb", "topic"]);
    std::fs::write(co.join("committed.txt"), "c").expect("write");
    git(&co, &["add", "committed.txt"]);
    git(&co, &["commit", "-qm", "local commit"]);
    let resp = c
        .dispose_workspace(DisposeWorkspaceRequest {
            id: "st".into(),
            backup: false,
            backup_logs: false,
        })
        .await
        .expect("dispose")
        .into_inner();
    let st = resp.git_status.expect("git status");
    assert_eq!(st.branch, "topic");
    assert_eq!(st.latest_commit.len(), 40);
    assert_eq!(st.uncommited_files, vec!["file.txt"]);
    let mut untracked = st.untracked_files.clone();
    untracked.sort();
    assert_eq!(untracked, vec!["name with spaces.txt", "new\nline.txt"]);
    assert_eq!(st.total_unpushed_commits, 1);
    assert!(
        st.unpushed_commits[0].ends_with(": local commit"),
        "{:?}",
        st.unpushed_commits
    );
    // A repeated dispose answers the same status.
    let again = c
        .dispose_workspace(DisposeWorkspaceRequest {
            id: "st".into(),
            backup: false,
            backup_logs: false,
        })
        .await
        .expect("again")
        .into_inner();
    assert_eq!(again.git_status, Some(st));

    init(
        &mut c,
        "many",
        git_init(
            &s.server.url("repo.git"),
            CloneTargetMode::RemoteHead,
            "",
            None,
        ),
    )
    .await
    .expect("clone");
    let co = checkout(&s.daemon, "many");
    for i in 0..120 {
        std::fs::write(co.join(format!("c-{i}")), "c").expect("write");
        git(&co, &["add", &format!("c-{i}")]);
        git(&co, &["commit", "-qm", &format!("c{i}")]);
    }
    for i in 0..120 {
        std::fs::write(co.join(format!("c-{i}")), "modified").expect("modify");
    }
    for i in 0..130 {
        std::fs::write(co.join(format!("untracked-{i}")), "u").expect("write");
    }
    let st = c
        .dispose_workspace(DisposeWorkspaceRequest {
            id: "many".into(),
            backup: false,
            backup_logs: false,
        })
        .await
        .expect("dispose")
        .into_inner()
        .git_status
        .expect("status");
    assert_eq!(st.uncommited_files.len(), 100);
    assert_eq!(st.untracked_files.len(), 100);
    assert_eq!(st.unpushed_commits.len(), 100);
    assert_eq!(st.total_uncommited_files, 120);
    assert_eq!(st.total_untracked_files, 130);
    assert_eq!(st.total_unpushed_commits, 120);

    // A repository whose config would make `git status` run a command gets no status and runs
    // nothing.
    init(
        &mut c,
        "evil",
        git_init(
            &s.server.url("repo.git"),
            CloneTargetMode::RemoteHead,
            "",
            None,
        ),
    )
    .await
    .expect("clone");
    let co = checkout(&s.daemon, "evil");
    let marker = s.root.join("filter-ran");
    git(
        &co,
        &[
            "config",
            "filter.x.clean",
            &format!("sh -c 'touch {}; cat'", marker.display()),
        ],
    );
    std::fs::write(co.join(".gitattributes"), "* filter=x\n").expect("write");
    std::fs::write(co.join("file.txt"), "changed\n").expect("write");
    let resp = c
        .dispose_workspace(DisposeWorkspaceRequest {
            id: "evil".into(),
            backup: false,
            backup_logs: false,
        })
        .await
        .expect("dispose")
        .into_inner();
    assert_eq!(resp.git_status, None);
    assert!(!marker.exists(), "the repository's filter did not run");

    // No repository: no status.
    init(&mut c, "norepo", Spec::Empty(Default::default()))
        .await
        .expect("empty");
    let resp = c
        .dispose_workspace(DisposeWorkspaceRequest {
            id: "norepo".into(),
            backup: false,
            backup_logs: false,
        })
        .await
        .expect("dispose")
        .into_inner();
    assert_eq!(resp.git_status, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn prebuild_updates_outdated_checkouts_and_falls_back_to_clone() {
    let s = setup(false).await;
    let mut c = s.daemon.client().await;
    let url = s.server.url("repo.git");
    // A prebuild taken at the first commit, with a local change.
    init(
        &mut c,
        "pb",
        git_init(
            &url,
            CloneTargetMode::RemoteCommit,
            &s.commits["first"],
            None,
        ),
    )
    .await
    .expect("clone first");
    let co = checkout(&s.daemon, "pb");
    std::fs::write(co.join("local.txt"), "local change\n").expect("write");
    // Hooks the workspace user planted in its checkout travel with the prebuild; the update
    // (fetch, checkout, stash) must not run them.
    let marker = s.root.join("hook-ran");
    std::fs::create_dir_all(co.join(".git/hooks")).expect("hooks folder");
    for hook in [
        "post-checkout",
        "post-merge",
        "reference-transaction",
        "pre-auto-gc",
    ] {
        let path = co.join(".git/hooks").join(hook);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {hook} >> {}\n", marker.display()),
        )
        .expect("hook");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
    let snapshot = c
        .take_snapshot(TakeSnapshotRequest {
            id: "pb".into(),
            return_immediately: false,
        })
        .await
        .expect("snapshot")
        .into_inner()
        .url;

    let git_main = match git_init(&url, CloneTargetMode::RemoteBranch, "main", None) {
        Spec::Git(g) => g,
        _ => unreachable!(),
    };
    let prebuild = |snap: &str| {
        Spec::Prebuild(PrebuildInitializer {
            prebuild: Some(SnapshotInitializer {
                snapshot: snap.to_string(),
                from_volume_snapshot: false,
            }),
            git: vec![git_main.clone()],
        })
    };
    init(&mut c, "from-pb", prebuild(&snapshot))
        .await
        .expect("prebuild init");
    let co = checkout(&s.daemon, "from-pb");
    assert_eq!(
        git(&co, &["rev-parse", "HEAD"]),
        s.commits["main"],
        "brought to the requested revision"
    );
    assert_eq!(
        std::fs::read_to_string(co.join("local.txt")).expect("kept"),
        "local change\n",
        "local changes kept"
    );
    let ready = std::fs::read_to_string(s.daemon.working_area().join("from-pb/.gitpod/ready"))
        .expect("ready");
    assert!(
        ready.contains("\"from-other\""),
        "an outdated prebuild says from-other: {ready}"
    );
    assert!(
        co.join(".git/hooks/post-checkout").is_file(),
        "the planted hook came with the prebuild"
    );
    assert!(
        !marker.exists(),
        "repository hooks ran: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );

    // A local change that conflicts with the requested revision: the revision wins, the change
    // stays in the stash.
    init(
        &mut c,
        "pbc",
        git_init(
            &url,
            CloneTargetMode::RemoteCommit,
            &s.commits["first"],
            None,
        ),
    )
    .await
    .expect("clone first");
    std::fs::write(
        checkout(&s.daemon, "pbc").join("file.txt"),
        "conflicting local edit\n",
    )
    .expect("write");
    let conflicting = c
        .take_snapshot(TakeSnapshotRequest {
            id: "pbc".into(),
            return_immediately: false,
        })
        .await
        .expect("snapshot")
        .into_inner()
        .url;
    init(&mut c, "from-pbc", prebuild(&conflicting))
        .await
        .expect("prebuild with a conflict");
    let co = checkout(&s.daemon, "from-pbc");
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), s.commits["main"]);
    assert_eq!(
        std::fs::read_to_string(co.join("file.txt")).expect("read"),
        "version 3\n",
        "the requested revision wins"
    );
    assert_eq!(
        git(&co, &["stash", "list"]).lines().count(),
        1,
        "the local change is kept in the stash"
    );

    let missing = "workspaces/meta-pb/snapshot-1.tar.zst@gitpod-user-owner-1";
    init(&mut c, "no-pb", prebuild(missing))
        .await
        .expect("fallback clone");
    let co = checkout(&s.daemon, "no-pb");
    assert_eq!(git(&co, &["rev-parse", "HEAD"]), s.commits["main"]);
}

/// No secret in the daemon's logs, state files, ready files or storage.
fn assert_no_secret(s: &Setup, secret: &str) {
    fn walk(dir: &Path, secret: &str) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                // Folders, `.git` included, are searched too.
                walk(&path, secret);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(secret), "secret found in {}", path.display());
            }
        }
    }
    walk(&s.daemon.dir, secret);
}

/// A git initializer after another one in a composite never deletes what the earlier one wrote
/// into the checkout folder: the clone refuses the non-empty folder and the init fails, instead of
/// succeeding with the earlier content silently gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_clone_never_deletes_content_already_in_its_folder() {
    use sha2::{Digest, Sha256};
    use wsd_proto::contentservice::file_download_initializer::FileInfo;
    use wsd_proto::contentservice::{
        CompositeInitializer, FileDownloadInitializer, WorkspaceInitializer,
    };
    use wsd_tests::http::{HttpServer, Route};

    let s = setup(false).await;
    let http = HttpServer::start(HashMap::from([(
        "/keep.txt".to_string(),
        Route::ok(b"written first".to_vec()),
    )]))
    .await;
    let composite = Spec::Composite(CompositeInitializer {
        initializer: vec![
            WorkspaceInitializer {
                spec: Some(Spec::Download(FileDownloadInitializer {
                    files: vec![FileInfo {
                        url: http.url("/keep.txt"),
                        file_path: "keep.txt".into(),
                        digest: format!("sha256:{}", hex::encode(Sha256::digest(b"written first"))),
                    }],
                    target_location: "repo".into(),
                })),
            },
            WorkspaceInitializer {
                spec: Some(git_init(
                    &s.server.url("repo.git"),
                    CloneTargetMode::RemoteHead,
                    "",
                    None,
                )),
            },
        ],
    });
    let mut c = s.daemon.client().await;
    let err = init(&mut c, "ws-composite", composite)
        .await
        .expect_err("the clone meets a non-empty folder");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("not an empty directory"),
        "{}",
        err.message()
    );
    assert!(
        !err.message().contains(&s.root.display().to_string()),
        "{}",
        err.message()
    );
}

/// A plain tar with the folder `repo/` (when `folder`) and symlinks (name, target).
fn archive_with_symlinks(folder: bool, links: &[(&str, &Path)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    if folder {
        let mut h = header(tar::EntryType::Directory, 0o755);
        builder
            .append_data(&mut h, "repo/", std::io::empty())
            .expect("folder entry");
    }
    for (name, target) in links {
        let mut h = header(tar::EntryType::Symlink, 0o777);
        builder
            .append_link(&mut h, name, target)
            .expect("symlink entry");
    }
    builder.into_inner().expect("archive")
}

/// Symlinks planted in the content before git runs there (by a snapshot restored first in a
/// composite, or in a prebuild) are never followed out of the content folder: a checkout
/// location that is a symlink, a `.git` symlink and a `.gitmodules` symlink, all pointing
/// outside. Before the paths were confined, the first was cloned into, and git read the
/// `.gitmodules` ones (failing here on their broken content, with a host path in the message).
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn symlinks_planted_in_the_checkout_are_not_followed_out_of_the_content() {
    use wsd_proto::contentservice::{CompositeInitializer, WorkspaceInitializer};
    use wsd_tests::tree;

    let s = setup(false).await;
    let outside = s.root.join("outside");
    // An empty folder a clone could fill, a working copy whose `.git` could be taken over, and a
    // `.gitmodules` that git cannot read without failing.
    std::fs::create_dir_all(outside.join("empty")).expect("mkdir");
    let proj = outside.join("proj");
    std::fs::create_dir_all(&proj).expect("mkdir");
    git(&proj, &["init", "-q"]);
    let gitmodules = outside.join("gitmodules");
    std::fs::write(&gitmodules, "[submodule \"x\"\n\tpath = x\n = broken =\n").expect("write");
    let before = tree::snapshot(&outside, &[]);

    let url = s.server.url("repo.git");
    // A prebuild whose checkout (a real clone) has a planted `.gitmodules` symlink.
    let pb_src = s.root.join("pb-src");
    std::fs::create_dir_all(&pb_src).expect("mkdir");
    git(&pb_src, &["clone", "-q", &url, "repo"]);
    std::os::unix::fs::symlink(&gitmodules, pb_src.join("repo/.gitmodules")).expect("symlink");
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder
        .append_dir_all("repo", pb_src.join("repo"))
        .expect("archive the clone");
    let prebuild_archive = builder.into_inner().expect("archive");

    let remote_head = git_init(&url, CloneTargetMode::RemoteHead, "", None);
    let at_main = git_init(
        &url,
        CloneTargetMode::RemoteCommit,
        &s.commits["main"],
        None,
    );
    let cases: Vec<(&str, Vec<u8>, Spec, &str)> = vec![
        (
            "checkout location",
            archive_with_symlinks(false, &[("repo", &outside.join("empty"))]),
            remote_head.clone(),
            "symlink",
        ),
        (
            ".git",
            archive_with_symlinks(true, &[("repo/.git", &proj.join(".git"))]),
            at_main.clone(),
            "symlink",
        ),
        (
            ".gitmodules",
            archive_with_symlinks(true, &[("repo/.gitmodules", &gitmodules)]),
            at_main,
            "symlink",
        ),
        (
            ".gitmodules in a prebuild",
            prebuild_archive,
            remote_head,
            "not a plain git working copy",
        ),
    ];
    let mut c = s.daemon.client().await;
    for (i, (name, archive, git_spec, why)) in cases.into_iter().enumerate() {
        let key = format!("workspaces/planted/snapshot-{i}.tar");
        let object = s.daemon.storage().join("gitpod-user-owner-1").join(&key);
        std::fs::create_dir_all(object.parent().expect("parent")).expect("mkdir");
        std::fs::write(&object, archive).expect("write archive");
        let snapshot = SnapshotInitializer {
            snapshot: format!("{key}@gitpod-user-owner-1"),
            from_volume_snapshot: false,
        };
        let spec = match git_spec {
            Spec::Git(g) if name.ends_with("prebuild") => Spec::Prebuild(PrebuildInitializer {
                prebuild: Some(snapshot),
                git: vec![g],
            }),
            git_spec => Spec::Composite(CompositeInitializer {
                initializer: vec![
                    WorkspaceInitializer {
                        spec: Some(Spec::Snapshot(snapshot)),
                    },
                    WorkspaceInitializer {
                        spec: Some(git_spec),
                    },
                ],
            }),
        };
        let err = init(&mut c, &format!("planted-{i}"), spec)
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::FailedPrecondition, "{name}: {err:?}");
        assert!(
            err.message().contains(why),
            "{name}: says why: {}",
            err.message()
        );
        assert!(
            !err.message().contains(&s.root.display().to_string()),
            "{name}: host path leaked: {}",
            err.message()
        );
        assert_eq!(
            tree::snapshot(&outside, &[]),
            before,
            "{name}: something outside the content changed"
        );
    }
}
