//! Watching the bytes of unfinished messages. tungstenite buffers a message until its last byte
//! arrives and tells nobody how much it holds meanwhile, so a client could send most of a large
//! message, or a fragment without its last one, and keep the server holding it. This reader sits
//! between the socket and tungstenite, follows the frame headers of what the client sends (RFC 6455
//! section 5.2: it does not unmask or copy anything), and keeps for each connection when its
//! current message started and how many of its bytes have arrived, against a budget shared by
//! the whole server.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the connection's handler reads of the watch.
#[derive(Default)]
pub struct Progress {
    /// When the message being received started (its first data frame's header), if one is.
    pub started: Option<Instant>,
    /// The server-wide budget refused this connection's message.
    pub over_budget: bool,
}

/// The server's budget of bytes in messages not received whole yet.
#[derive(Debug)]
pub struct Budget {
    pub max: usize,
    pub used: AtomicUsize,
}

/// Where the parser is in the client's byte stream.
enum Stage {
    /// Reading a frame header (at most 14 bytes).
    Header { buf: [u8; 14], have: usize },
    /// Skipping a frame's payload: `left` bytes, counted if it belongs to a data message.
    Payload { left: u64, data: bool, fin: bool },
}

pub struct Watched<S> {
    inner: S,
    stage: Stage,
    /// Bytes of the current message received so far (taken from the budget).
    held: usize,
    budget: Arc<Budget>,
    progress: Arc<Mutex<Progress>>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, budget: Arc<Budget>) -> (Watched<S>, Arc<Mutex<Progress>>) {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let stage = Stage::Header { buf: [0; 14], have: 0 };
        (Watched { inner, stage, held: 0, budget, progress: progress.clone() }, progress)
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows `bytes`, just read from the client. An error when the budget is spent.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.stage {
                Stage::Header { buf, have } => {
                    let take = (14 - *have).min(bytes.len());
                    buf[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    let Some((header_len, payload, opcode, fin)) = parse_header(&buf[..*have]) else {
                        bytes = &bytes[take..];
                        continue;
                    };
                    // Give back what of `take` belongs to the payload.
                    let extra = *have - header_len;
                    bytes = &bytes[take - extra..];
                    let data = opcode <= 2; // continuation, text, binary
                    if data && self.held == 0 && self.progress().started.is_none() {
                        self.progress().started = Some(Instant::now());
                    }
                    self.stage = Stage::Payload { left: payload, data, fin };
                    self.end_frame_if_done();
                }
                Stage::Payload { left, data, .. } => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    *left -= n as u64;
                    let data = *data;
                    bytes = &bytes[n..];
                    if data {
                        self.hold(n)?;
                    }
                    self.end_frame_if_done();
                }
            }
        }
        Ok(())
    }

    /// At the end of a frame: a final data frame ends the message and gives its bytes back.
    fn end_frame_if_done(&mut self) {
        if let Stage::Payload { left: 0, data, fin } = self.stage {
            if data && fin {
                self.release();
                self.progress().started = None;
            }
            self.stage = Stage::Header { buf: [0; 14], have: 0 };
        }
    }

    fn hold(&mut self, n: usize) -> io::Result<()> {
        self.held += n;
        if self.budget.used.fetch_add(n, Relaxed) + n > self.budget.max {
            self.progress().over_budget = true;
            return Err(io::Error::other("the server's budget for messages in progress is spent"));
        }
        Ok(())
    }

    fn release(&mut self) {
        self.budget.used.fetch_sub(std::mem::take(&mut self.held), Relaxed);
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        self.release();
    }
}

/// (header length, payload length, opcode, fin) once `buf` holds a whole frame header.
fn parse_header(buf: &[u8]) -> Option<(usize, u64, u8, bool)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (ext, len7) = match b1 & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return None;
    }
    let payload = len7.unwrap_or_else(|| buf[2..2 + ext].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
    Some((header_len, payload, b0 & 0x0f, b0 & 0x80 != 0))
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.follow(&buf.filled()[before..])?;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, fin: bool, payload: usize) -> Vec<u8> {
        let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload {
            0..=125 => f.push(0x80 | payload as u8),
            126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]); // mask
        f.extend(std::iter::repeat_n(7u8, payload));
        f
    }

    fn watched(max: usize) -> (Watched<()>, Arc<Mutex<Progress>>, Arc<Budget>) {
        let budget = Arc::new(Budget { max, used: AtomicUsize::new(0) });
        let (w, p) = Watched::new((), budget.clone());
        (w, p, budget)
    }

    #[test]
    fn a_fragmented_message_is_held_until_its_last_frame_pongs_between_change_nothing() {
        let (mut w, progress, budget) = watched(1 << 20);
        let mut bytes = frame(2, false, 1000);
        bytes.extend(frame(10, true, 4)); // a pong between fragments
        bytes.extend(frame(0, false, 70_000));
        // Byte by byte, as a slow client sends them.
        for b in &bytes {
            w.follow(std::slice::from_ref(b)).unwrap();
        }
        assert!(progress.lock().unwrap().started.is_some());
        assert_eq!(budget.used.load(Relaxed), 71_000);
        w.follow(&frame(0, true, 10)).unwrap();
        assert!(progress.lock().unwrap().started.is_none());
        assert_eq!(budget.used.load(Relaxed), 0);
    }

    #[test]
    fn the_budget_refuses_and_is_given_back_when_the_connection_ends() {
        let (mut w, progress, budget) = watched(50_000);
        assert!(w.follow(&frame(2, false, 40_000)).is_ok());
        assert!(w.follow(&frame(0, false, 40_000)).is_err());
        assert!(progress.lock().unwrap().over_budget);
        drop(w);
        assert_eq!(budget.used.load(Relaxed), 0);
    }

    #[test]
    fn whole_messages_in_one_read_leave_nothing_held() {
        let (mut w, progress, budget) = watched(1 << 20);
        let mut bytes = Vec::new();
        for n in [0, 5, 126, 300, 70_000] {
            bytes.extend(frame(2, true, n));
        }
        w.follow(&bytes).unwrap();
        assert_eq!(budget.used.load(Relaxed), 0);
        assert!(progress.lock().unwrap().started.is_none());
    }
}
