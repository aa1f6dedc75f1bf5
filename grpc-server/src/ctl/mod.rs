//! `ws-daemon ctl`: an operator's command line for a running daemon. Each subcommand is one RPC of
//! the contract over TCP or the daemon's unix socket; long work (init, backup, snapshot) shows its
//! progress from the WatchProgress stream. The exit code is the gRPC status code of the answer
//! (0 when it succeeded), so scripts can tell NOT_FOUND (5) from UNAVAILABLE (14).

mod connect;
mod progress;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tonic::transport::Channel;
use tonic::{Code, Status};
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{
    EmptyInitializer, FromBackupInitializer, GitStatus, SnapshotInitializer, WorkspaceInitializer,
};
use wsd_proto::wsdaemon::workspace_content_ext_client::WorkspaceContentExtClient;
use wsd_proto::wsdaemon::workspace_content_service_client::WorkspaceContentServiceClient;
use wsd_proto::wsdaemon::{
    BackupWorkspaceRequest, DisposeWorkspaceRequest, InitWorkspaceRequest, ProgressRequest,
    TakeSnapshotRequest, WorkspaceContentState, WorkspaceMetadata, WorkspaceStateRequest,
};

pub use connect::Target;
use progress::Display;

/// How long a finished operation's last progress report may take to arrive after its answer.
const LAST_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// gRPC address of the daemon, e.g. http://127.0.0.1:8080 [default: the configuration's
    /// server.unix_socket if set, else server.listen].
    #[arg(long, env = "WSD_CTL_ADDR", conflicts_with = "socket")]
    pub addr: Option<String>,
    /// The daemon's unix socket (its server.unix_socket).
    #[arg(long, env = "WSD_CTL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Progress as plain lines even on a terminal.
    #[arg(long)]
    pub plain: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Initializes a workspace instance: empty, from its backup, or from a snapshot. A backup of
    /// owner + meta id is restored whatever is asked, as the daemon always does.
    Init {
        /// Instance id.
        id: String,
        /// Workspace id, stable across instances (backups are kept under it).
        #[arg(long)]
        meta_id: String,
        /// Owner of the workspace (a user id).
        #[arg(long)]
        owner: String,
        /// Restore the workspace's backup (fails when there is none).
        #[arg(long, conflicts_with = "snapshot")]
        from_backup: bool,
        /// Restore this snapshot (the name TakeSnapshot answered).
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// Backs a workspace instance up; prints the backup's name.
    Backup { id: String },
    /// Takes a snapshot of a workspace instance; prints the snapshot's name.
    Snapshot { id: String },
    /// Disposes of a workspace instance after a final backup; prints its git status.
    Dispose {
        id: String,
        /// Dispose without the final backup (its changes are lost).
        #[arg(long)]
        no_backup: bool,
    },
    /// Prints the content state of a workspace instance.
    State { id: String },
    /// Follows the running (or last) init, backup or snapshot of a workspace instance.
    Watch { id: String },
}

/// Runs `args` against the daemon that `config` describes; answers the process's exit code.
pub fn main(args: CtlArgs, config: Result<wsd_core::Config, String>) -> std::process::ExitCode {
    let target = match Target::choose(args.addr.as_deref(), args.socket.as_deref(), config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ws-daemon ctl: {e}");
            return std::process::ExitCode::from(Code::InvalidArgument as u8);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ws-daemon ctl: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let display = Display::for_stderr(args.plain);
    match runtime.block_on(run(&target, args.command, display)) {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(status) => {
            eprintln!(
                "ws-daemon ctl: {}: {}",
                code_name(status.code()),
                status.message()
            );
            std::process::ExitCode::from(exit_code(status.code()))
        }
    }
}

/// The exit code of an answer: the status code's number (OK is 0).
pub fn exit_code(code: Code) -> u8 {
    // Status codes run from 0 to 16.
    code as u8
}

/// The name of a status code as the gRPC specification spells it (NOT_FOUND), from core's table.
fn code_name(code: Code) -> &'static str {
    wsd_core::Code::ALL
        .get(code as usize)
        .map_or("UNKNOWN", |c| c.name())
}

struct Clients {
    content: WorkspaceContentServiceClient<Channel>,
    ext: WorkspaceContentExtClient<Channel>,
}

async fn run(target: &Target, command: CtlCommand, display: Display) -> Result<String, Status> {
    let channel = target.connect().await?;
    let mut c = Clients {
        content: WorkspaceContentServiceClient::new(channel.clone()),
        ext: WorkspaceContentExtClient::new(channel),
    };
    match command {
        CtlCommand::Init {
            id,
            meta_id,
            owner,
            from_backup,
            snapshot,
        } => {
            let spec = match (from_backup, snapshot) {
                (true, _) => Spec::Backup(FromBackupInitializer::default()),
                (false, Some(snapshot)) => Spec::Snapshot(SnapshotInitializer {
                    snapshot,
                    from_volume_snapshot: false,
                }),
                (false, None) => Spec::Empty(EmptyInitializer {}),
            };
            let request = InitWorkspaceRequest {
                id: id.clone(),
                metadata: Some(WorkspaceMetadata { owner, meta_id }),
                initializer: Some(WorkspaceInitializer { spec: Some(spec) }),
                ..Default::default()
            };
            let mut content = c.content.clone();
            // A new instance has no earlier operation: its first report is this init's.
            with_progress(&mut c, &id, None, display, async move {
                content.init_workspace(request).await
            })
            .await?;
            Ok(String::new())
        }
        CtlCommand::Backup { id } => {
            let after = last_seq(&mut c, &id).await?;
            let mut content = c.content.clone();
            let request = BackupWorkspaceRequest { id: id.clone() };
            let answer = with_progress(&mut c, &id, Some(after), display, async move {
                content.backup_workspace(request).await
            })
            .await?;
            Ok(answer.url)
        }
        CtlCommand::Snapshot { id } => {
            let after = last_seq(&mut c, &id).await?;
            let mut content = c.content.clone();
            let request = TakeSnapshotRequest {
                id: id.clone(),
                return_immediately: false,
            };
            let answer = with_progress(&mut c, &id, Some(after), display, async move {
                content.take_snapshot(request).await
            })
            .await?;
            Ok(answer.url)
        }
        CtlCommand::Dispose { id, no_backup } => {
            let after = last_seq(&mut c, &id).await?;
            let mut content = c.content.clone();
            let request = DisposeWorkspaceRequest {
                id: id.clone(),
                backup: !no_backup,
                backup_logs: false,
            };
            let answer = with_progress(&mut c, &id, Some(after), display, async move {
                content.dispose_workspace(request).await
            })
            .await?;
            Ok(git_status_text(answer.git_status.as_ref()))
        }
        CtlCommand::State { id } => {
            let answer = c
                .ext
                .workspace_state(WorkspaceStateRequest { id })
                .await?
                .into_inner();
            let state = WorkspaceContentState::try_from(answer.state)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_else(|_| format!("UNKNOWN({})", answer.state));
            Ok(state)
        }
        CtlCommand::Watch { id } => {
            let mut stream = c
                .ext
                .watch_progress(ProgressRequest {
                    id: id.clone(),
                    after: 0,
                    wait_ms: 0,
                })
                .await?
                .into_inner();
            let mut shown = display.start(&id);
            let mut last = None;
            while let Some(report) = stream.message().await? {
                shown.show(&report);
                last = Some(report);
            }
            shown.finish();
            match last {
                Some(report) if !report.error.is_empty() => Err(Status::unknown(format!(
                    "the {} of {id} failed: {}",
                    report.operation, report.error
                ))),
                Some(report) if report.operation.is_empty() => {
                    Ok(format!("{id}: nothing ran since the daemon started"))
                }
                _ => Ok(String::new()),
            }
        }
    }
}

/// The seq of the last progress report of `id`, so that a watch shows only what comes next. An
/// unknown workspace is the operation's to answer (DisposeWorkspace of one already gone is OK).
async fn last_seq(c: &mut Clients, id: &str) -> Result<u64, Status> {
    let answer = c
        .ext
        .progress(ProgressRequest {
            id: id.to_string(),
            after: 0,
            wait_ms: 0,
        })
        .await;
    match answer {
        Ok(report) => Ok(report.into_inner().seq),
        Err(s) if s.code() == Code::NotFound => Ok(0),
        Err(s) => Err(s),
    }
}

/// Runs `call` while showing the progress of `id` after the report `after` (None: the instance
/// is made by `call`, so its first report is awaited). The call's answer decides the outcome; the
/// display is only a view of it and never fails the command.
async fn with_progress<T>(
    c: &mut Clients,
    id: &str,
    after: Option<u64>,
    display: Display,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    let mut ext = c.ext.clone();
    let id_owned = id.to_string();
    let mut shown = display.start(id);
    let watch = async move {
        let after = match after {
            Some(after) => after,
            // The instance exists once InitWorkspace has taken it: until then, NOT_FOUND.
            None => loop {
                match ext
                    .progress(ProgressRequest {
                        id: id_owned.clone(),
                        after: 0,
                        wait_ms: 0,
                    })
                    .await
                {
                    Ok(_) => break 0,
                    Err(s) if s.code() == Code::NotFound => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    Err(_) => return,
                }
            },
        };
        let Ok(stream) = ext
            .watch_progress(ProgressRequest {
                id: id_owned,
                after,
                wait_ms: 0,
            })
            .await
        else {
            return;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(report)) = stream.message().await {
            shown.show(&report);
        }
    };
    tokio::pin!(watch);
    tokio::pin!(call);
    let answer = tokio::select! {
        answer = &mut call => {
            // The operation's last report ("done") is on its way: show it before the answer.
            if answer.is_ok() {
                let _ = tokio::time::timeout(LAST_REPORT_WAIT, &mut watch).await;
            }
            answer
        }
        // The stream ended first (the operation is done): the answer follows.
        () = &mut watch => call.await,
    };
    answer.map(tonic::Response::into_inner)
}

fn git_status_text(status: Option<&GitStatus>) -> String {
    let Some(s) = status else {
        return String::new();
    };
    let mut lines = vec![
        format!("branch: {}", s.branch),
        format!("latest commit: {}", s.latest_commit),
    ];
    let counts = [
        ("uncommitted files", s.total_uncommited_files),
        ("untracked files", s.total_untracked_files),
        ("unpushed commits", s.total_unpushed_commits),
    ];
    for (what, n) in counts {
        lines.push(format!("{what}: {n}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_follow_the_grpc_spelling() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::DataLoss), "DATA_LOSS");
    }

    #[test]
    fn exit_codes_are_the_status_numbers() {
        assert_eq!(exit_code(Code::Ok), 0);
        assert_eq!(exit_code(Code::NotFound), 5);
        assert_eq!(exit_code(Code::Unavailable), 14);
        assert_eq!(exit_code(Code::Unauthenticated), 16);
    }
}
