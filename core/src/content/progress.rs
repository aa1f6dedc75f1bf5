//! Progress of the long operations of a workspace (init, backup, snapshot): counters that the
//! archive code bumps from its threads, a phase, and the outcome, answered by the Progress long
//! poll (and the WatchProgress stream built on it), and logged at an interval while they run.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wsd_proto::wsdaemon::{ProgressRequest, ProgressResponse};

use crate::archive::Counters;
use crate::error::Error;
use crate::sync::Mutex;

/// The longest a Progress call waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// While an operation runs, its counters are looked at this often for a change to report.
const TICK: Duration = Duration::from_millis(500);
/// How often a running operation writes a log line.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One operation of one workspace.
pub struct Operation {
    id: String,
    kind: &'static str,
    started: Instant,
    counters: Arc<Counters>,
    state: Mutex<OpState>,
    /// Bumped on every phase change and at the end.
    changed: watch::Sender<u64>,
}

struct OpState {
    phase: String,
    done: bool,
    error: String,
    /// What was last reported, with its number.
    seq: u64,
    reported: (u64, u64, u64, u64, String, bool),
}

impl Operation {
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    pub fn set_phase(&self, phase: &str) {
        let mut s = self.state.lock();
        if s.phase != phase {
            s.phase = phase.to_string();
            drop(s);
            self.changed.send_modify(|v| *v += 1);
        }
    }

    fn finish(&self, error: Option<&Error>) {
        {
            let mut s = self.state.lock();
            if s.done {
                return;
            }
            s.done = true;
            s.phase = if error.is_some() { "failed" } else { "done" }.to_string();
            s.error = error.map(|e| e.to_string()).unwrap_or_default();
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// The report as of now; a new seq when anything differs from the last report.
    fn report(&self) -> ProgressResponse {
        let c = &self.counters;
        let counters = (
            c.bytes.load(Ordering::Relaxed),
            c.bytes_total.load(Ordering::Relaxed),
            c.files.load(Ordering::Relaxed),
            c.files_total.load(Ordering::Relaxed),
        );
        let mut s = self.state.lock();
        let now = (
            counters.0,
            counters.1,
            counters.2,
            counters.3,
            s.phase.clone(),
            s.done,
        );
        if now != s.reported {
            s.seq += 1;
            s.reported = now;
        }
        ProgressResponse {
            seq: s.seq,
            operation: self.kind.to_string(),
            phase: s.phase.clone(),
            bytes_done: counters.0,
            bytes_total: counters.1,
            files_done: counters.2,
            files_total: counters.3,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            done: s.done,
            error: s.error.clone(),
        }
    }
}

/// Ends its operation when dropped: with the outcome given to [`Running::finish`], else as
/// interrupted (the call's future was dropped).
pub struct Running {
    op: Arc<Operation>,
}

impl Running {
    pub fn operation(&self) -> &Operation {
        &self.op
    }

    pub fn finish<T>(self, result: &crate::Result<T>) {
        self.op.finish(result.as_ref().err());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.op.finish(Some(&Error::Internal(
            "the operation was interrupted".into(),
        )));
    }
}

/// The latest operation of every workspace.
pub struct Board {
    ops: Mutex<HashMap<String, Arc<Operation>>>,
    /// Bumped when an operation starts, so that polls waiting on the previous one wake.
    started: watch::Sender<u64>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            ops: Mutex::new(HashMap::new()),
            started: watch::channel(0).0,
        }
    }
}

impl Board {
    /// Starts reporting operation `kind` of workspace `id` (replacing what it reported before).
    pub fn start(&self, id: &str, kind: &'static str, phase: &str) -> Running {
        let previous_seq = self.ops.lock().get(id).map_or(0, |op| op.state.lock().seq);
        let op = Arc::new(Operation {
            id: id.to_string(),
            kind,
            started: Instant::now(),
            counters: Arc::new(Counters::default()),
            state: Mutex::new(OpState {
                phase: phase.to_string(),
                done: false,
                error: String::new(),
                // Numbers go on from the previous operation's, so a watcher sees the change.
                seq: previous_seq,
                reported: (u64::MAX, 0, 0, 0, String::new(), false),
            }),
            changed: watch::channel(0).0,
        });
        self.ops.lock().insert(id.to_string(), op.clone());
        self.started.send_modify(|n| *n += 1);
        log_while_running(&op);
        Running { op }
    }

    /// Forgets the finished operations of workspaces that `exists` no longer knows (disposed
    /// ones: their last report stays until housekeeping runs).
    pub fn forget_gone(&self, exists: impl Fn(&str) -> bool) {
        self.ops
            .lock()
            .retain(|id, op| exists(id) || !op.state.lock().done);
    }

    /// The report of the workspace's latest operation once its seq is past `after`, waiting up to
    /// `wait` for that. `None` when no operation of the workspace is known.
    pub async fn poll(&self, id: &str, after: u64, wait: Duration) -> Option<ProgressResponse> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let mut started = self.started.subscribe();
            let op = self.ops.lock().get(id).cloned()?;
            let mut changed = op.changed.subscribe();
            let report = op.report();
            if report.seq > after || tokio::time::Instant::now() >= deadline {
                return Some(report);
            }
            let tick = if report.done { MAX_WAIT } else { TICK };
            let wake = (tokio::time::Instant::now() + tick).min(deadline);
            tokio::select! {
                _ = changed.changed() => {}
                _ = started.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// How long one Progress call of a stream waits before it asks again.
const STREAM_POLL_WAIT_MS: u32 = 30_000;

/// WatchProgress: the Progress long poll at `poll` asked again and again, each new report sent
/// once, until the operation is done (or the workspace goes).
pub fn watch(
    daemon: crate::daemon::Daemon,
    poll: &'static str,
    request: bytes::Bytes,
    ctx: crate::call::CallContext,
) -> futures::stream::BoxStream<'static, crate::Result<Vec<u8>>> {
    use prost::Message;
    let first = ProgressRequest::decode(request).map_err(|e| Error::BadRequest {
        method: poll.to_string(),
        reason: e.to_string(),
    });
    let state = (daemon, first, false);
    Box::pin(futures::stream::unfold(
        state,
        move |(daemon, req, ended)| {
            let ctx = ctx.clone();
            async move {
                if ended {
                    return None;
                }
                let mut req = match req {
                    Ok(req) => req,
                    Err(e) => return Some((Err(e), (daemon, Err(Error::Cancelled), true))),
                };
                loop {
                    req.wait_ms = STREAM_POLL_WAIT_MS;
                    let answer = daemon
                        .call(poll, req.encode_to_vec().into(), ctx.clone())
                        .await
                        .and_then(|bytes| {
                            ProgressResponse::decode(bytes.as_slice()).map_err(Error::internal)
                        });
                    match answer {
                        Err(e) => return Some((Err(e), (daemon, Ok(req), true))),
                        // Nothing new within the wait: ask again.
                        Ok(report) if report.seq <= req.after && !report.done => continue,
                        Ok(report) => {
                            let ended = report.done;
                            req.after = report.seq;
                            let bytes = report.encode_to_vec();
                            return Some((Ok(bytes), (daemon, Ok(req), ended)));
                        }
                    }
                }
            }
        },
    ))
}

/// Logs a line every [`LOG_EVERY`] while the operation runs.
fn log_while_running(op: &Arc<Operation>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let op = Arc::downgrade(op);
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(LOG_EVERY).await;
            let Some(op) = op.upgrade() else { return };
            let r = op.report();
            if r.done {
                return;
            }
            tracing::info!(
                id = %op.id, operation = op.kind, phase = %r.phase,
                mib = r.bytes_done as f64 / f64::from(1 << 20),
                mib_total = r.bytes_total as f64 / f64::from(1 << 20),
                files = r.files_done, files_total = r.files_total,
                secs = r.elapsed_secs as u64,
                "{} in progress", op.kind
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn polls_answer_changes_once_and_wait_otherwise() {
        let board = Board::default();
        assert!(board.poll("w", 0, Duration::ZERO).await.is_none());
        let running = board.start("w", "backup", "reading");
        let first = board.poll("w", 0, Duration::ZERO).await.unwrap();
        assert_eq!(
            (first.operation.as_str(), first.phase.as_str()),
            ("backup", "reading")
        );
        assert!(first.seq > 0 && !first.done);
        // Nothing changed: the poll waits its full time and answers the same seq.
        let same = board
            .poll("w", first.seq, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(same.seq, first.seq);
        // Counters moved: the next tick reports them.
        let counters = running.operation().counters();
        counters.add_bytes(4096);
        counters.add_file();
        let moved = board
            .poll("w", first.seq, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(moved.seq > first.seq);
        assert_eq!((moved.bytes_done, moved.files_done), (4096, 1));
        // The end wakes a waiting poll at once.
        let waiter = {
            let seq = moved.seq;
            async move { board.poll("w", seq, Duration::from_secs(50)).await }
        };
        let finish = async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            running.finish(&Ok::<(), Error>(()));
        };
        let (end, ()) = tokio::join!(waiter, finish);
        let end = end.unwrap();
        assert!(end.done && end.error.is_empty() && end.phase == "done");
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_waiting_on_a_finished_operation_wakes_for_the_next() {
        let board = Arc::new(Board::default());
        board.start("w", "init", "x").finish(&Ok::<(), Error>(()));
        let done = board.poll("w", 0, Duration::ZERO).await.unwrap();
        let waiter = {
            let board = board.clone();
            tokio::spawn(async move { board.poll("w", done.seq, Duration::from_secs(50)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _backup = board.start("w", "backup", "reading");
        let next = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken at once")
            .unwrap()
            .unwrap();
        assert_eq!((next.operation.as_str(), next.done), ("backup", false));
        assert!(next.seq > done.seq);
    }

    #[tokio::test]
    async fn a_dropped_operation_ends_as_interrupted() {
        let board = Board::default();
        drop(board.start("w", "init", "restoring"));
        let r = board.poll("w", 0, Duration::ZERO).await.unwrap();
        assert!(r.done);
        assert!(r.error.contains("interrupted"), "{}", r.error);
    }
}
