//! A blocking `Write` whose bytes arrive as `Bytes` chunks on an async channel: the bridge between an
//! archive writer thread and an async upload, with bounded memory (`depth` chunks of `chunk` bytes).

use bytes::{Bytes, BytesMut};
use std::io::{self, Write};
use tokio::sync::mpsc;

pub struct PipeWriter {
    buf: BytesMut,
    chunk: usize,
    tx: mpsc::Sender<Bytes>,
    written: u64,
}

pub fn channel(chunk: usize, depth: usize) -> (PipeWriter, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(depth);
    (
        PipeWriter {
            buf: BytesMut::with_capacity(chunk),
            chunk,
            tx,
            written: 0,
        },
        rx,
    )
}

impl PipeWriter {
    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(self.chunk);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= self.chunk {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffered()
    }
}
