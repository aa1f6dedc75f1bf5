//! The two ends of the extraction pipeline: the calling thread reads (and decodes) the input into
//! chunks, the extraction thread reads them back as one stream.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use super::super::ArchiveError;

/// Size of one chunk handed from the reading to the extracting thread.
pub(super) const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the two threads.
pub(super) const CHANNEL_DEPTH: usize = 16;

pub(super) struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// Reads the input (decoding zstd if needed) in the calling thread and hands
/// chunks to the extraction thread.
pub(super) struct Feeder {
    pub(super) full: SyncSender<io::Result<Chunk>>,
    pub(super) free: Receiver<Vec<u8>>,
}

pub(super) enum FeedOutcome {
    /// Input fully consumed; bytes read from the caller's stream.
    Done,
    /// The extraction thread stopped reading (it failed or finished early).
    Stopped,
    Failed(ArchiveError),
}

/// Counts bytes read from the caller's stream and records EOF.
pub(super) struct CountingReader<R> {
    pub(super) inner: R,
    pub(super) count: Rc<Cell<u64>>,
    pub(super) eof: Rc<Cell<bool>>,
    pub(super) failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        })?;
        if n == 0 && !buf.is_empty() {
            self.eof.set(true);
        }
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl Feeder {
    pub(super) fn run(
        &self,
        mut src: impl Read,
        is_zstd: bool,
        input_eof: &Cell<bool>,
        src_failed: &Cell<bool>,
    ) -> FeedOutcome {
        loop {
            let mut buf = match self.free.try_recv() {
                Ok(b) => b,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => vec![0u8; CHUNK],
            };
            let mut len = 0;
            let mut end = false;
            while len < buf.len() {
                match src.read(&mut buf[len..]) {
                    Ok(0) => {
                        end = true;
                        break;
                    }
                    Ok(n) => len += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let err = if src_failed.get() || !is_zstd {
                            // Error of the caller's stream itself.
                            ArchiveError::io("read archive", b"", e)
                        } else if input_eof.get() || e.kind() == io::ErrorKind::UnexpectedEof {
                            ArchiveError::Truncated(format!("zstd: {e}"))
                        } else {
                            ArchiveError::Malformed(format!("zstd: {e}"))
                        };
                        // Let the extraction thread stop too.
                        let _ = self
                            .full
                            .send(Err(io::Error::other("archive stream failed")));
                        return FeedOutcome::Failed(err);
                    }
                }
            }
            if len > 0 && self.full.send(Ok(Chunk { buf, len })).is_err() {
                return FeedOutcome::Stopped;
            }
            if end {
                return FeedOutcome::Done;
            }
        }
    }
}

/// `Read` adapter over the chunk channel, used by the extraction thread.
pub(super) struct ChanReader {
    full: Receiver<io::Result<Chunk>>,
    free: SyncSender<Vec<u8>>,
    cur: Option<Chunk>,
    pos: usize,
    eof: Rc<Cell<bool>>,
    failed: bool,
}

impl ChanReader {
    /// Reads the chunks from `full`, gives their buffers back on `free`, and sets `eof` when the
    /// input ends.
    pub(super) fn new(
        full: Receiver<io::Result<Chunk>>,
        free: SyncSender<Vec<u8>>,
        eof: Rc<Cell<bool>>,
    ) -> ChanReader {
        ChanReader {
            full,
            free,
            cur: None,
            pos: 0,
            eof,
            failed: false,
        }
    }
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(chunk) = &self.cur {
                if self.pos < chunk.len {
                    let n = out.len().min(chunk.len - self.pos);
                    out[..n].copy_from_slice(&chunk.buf[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            if let Some(chunk) = self.cur.take() {
                let _ = self.free.try_send(chunk.buf);
            }
            if self.failed {
                return Err(io::Error::other("archive stream failed"));
            }
            match self.full.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = Some(chunk);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                Err(_) => {
                    self.eof.set(true);
                    return Ok(0);
                }
            }
        }
    }
}
