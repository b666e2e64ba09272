//! A connection's outbound queue: the room pushes frames into it and never waits; the connection
//! task takes them in order and writes them to the socket. It also carries the one close reason
//! the room may give, and tells each side when the other has let go.
//!
//! Why not a tokio `mpsc` channel (and a `watch` channel for the close reason): a bounded `mpsc`
//! allocates its first block of 32 slots when it is made (1 KiB of `Bytes`) and the
//! `watch` channel another ~370 B, on every connection, idle or not: 13 % of an idle connection's
//! memory in the massif profile in docs/benchmarks.md. Here an idle connection holds one small
//! allocation; the deque grows with a burst and is freed once the burst has been written.

use super::QueueError;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Frames the room may queue for one connection before the client counts as too slow. Frames are
/// shared `Bytes`, so a full queue costs pointers, not copies; 1024 absorbs a burst such as a
/// reconnecting client's thousand offline edits echoed back.
pub const OUTBOUND_QUEUE: usize = 1024;

/// Bytes the room may have queued for one connection before it counts as too slow. Bounds what a
/// client that stops reading (or floods SyncStep1s, each answered with the whole document) can make
/// the server hold.
pub const OUTBOUND_QUEUE_BYTES: usize = 64 << 20;

/// A deque that grew past this many slots is freed once it is empty again, so that one burst
/// does not stay allocated on a connection that then sits idle for hours.
const KEEP_SLOTS: usize = 64;

pub struct Outbox {
    // std Mutex: held only to push or pop one frame, never across an await; the room and the
    // connection task rarely contend, so an async mutex would only add cost.
    state: Mutex<State>,
    /// Wakes the connection task; a permit is kept when it is not waiting, so no push is missed.
    notify: Notify,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    /// Bytes in `frames`.
    bytes: usize,
    /// Why the room closes this connection; the first reason given wins.
    close: Option<(u16, String)>,
    /// The room let go of the connection: after the frames already queued, nothing more comes.
    released: bool,
    /// The connection task has ended: pushing is pointless.
    gone: bool,
}

/// What the connection task should do next.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Write this frame.
    Frame(Bytes),
    /// Every frame has been taken and the room closed or let go of the connection: end it, with
    /// the close code and reason if the room gave one.
    End(Option<(u16, String)>),
}

impl Outbox {
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox { state: Mutex::new(State::default()), notify: Notify::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame unless the connection has ended, or already holds `max_frames` frames or
    /// more than `max_bytes` bytes (a client that cannot keep up). Never waits.
    pub fn push(&self, frame: Bytes, max_frames: usize, max_bytes: usize) -> Result<(), QueueError> {
        {
            let mut s = self.lock();
            if s.gone {
                return Err(QueueError::Closed);
            }
            if s.frames.len() >= max_frames || s.bytes + frame.len() > max_bytes {
                return Err(QueueError::Full);
            }
            s.bytes += frame.len();
            s.frames.push_back(frame);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Asks the connection task to send a close frame (after what is queued) and end. The first
    /// reason wins.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut s = self.lock();
            if s.close.is_some() {
                return;
            }
            s.close = Some((code, reason.to_owned()));
        }
        self.notify.notify_one();
    }

    /// The room let go of the connection (see `ConnSender`'s `Drop`).
    pub fn release(&self) {
        self.lock().released = true;
        self.notify.notify_one();
    }

    /// The connection task has ended: later pushes fail with `Closed`, and what is queued is freed.
    pub fn end(&self) {
        let mut s = self.lock();
        s.gone = true;
        s.frames = VecDeque::new();
        s.bytes = 0;
    }

    /// The next frame if one is queued (to batch several into one flush).
    pub fn try_frame(&self) -> Option<Bytes> {
        let mut s = self.lock();
        let frame = s.frames.pop_front()?;
        s.bytes -= frame.len();
        if s.frames.is_empty() && s.frames.capacity() > KEEP_SLOTS {
            s.frames = VecDeque::new();
        }
        Some(frame)
    }

    /// Waits for the next frame, or for the end once nothing is queued. Cancel safe: a frame is
    /// only taken when this returns it.
    pub async fn next(&self) -> Next {
        loop {
            if let Some(frame) = self.try_frame() {
                return Next::Frame(frame);
            }
            {
                let s = self.lock();
                if s.close.is_some() || s.released {
                    return Next::End(s.close.clone());
                }
            }
            // A push after the checks above left a permit, so this returns at once then.
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[tokio::test]
    async fn frames_come_out_in_order_then_the_close_reason() {
        let o = Outbox::new();
        o.push(frame(1), 10, 100).ok().unwrap();
        o.push(frame(2), 10, 100).ok().unwrap();
        o.close(1013, "too slow");
        o.close(1011, "second reason is ignored");
        assert_eq!(o.next().await, Next::Frame(frame(1)));
        assert_eq!(o.next().await, Next::Frame(frame(2)));
        assert_eq!(o.next().await, Next::End(Some((1013, "too slow".into()))));
    }

    #[tokio::test]
    async fn a_release_without_reason_ends_after_the_queue() {
        let o = Outbox::new();
        o.push(frame(3), 10, 100).ok().unwrap();
        o.release();
        assert_eq!(o.next().await, Next::Frame(frame(3)));
        assert_eq!(o.next().await, Next::End(None));
    }

    #[test]
    fn limits_count_frames_and_bytes_and_an_ended_connection_refuses() {
        let o = Outbox::new();
        assert!(o.push(frame(60), 2, 100).is_ok());
        assert!(matches!(o.push(frame(41), 2, 100), Err(QueueError::Full)), "bytes over the limit");
        assert!(o.push(frame(40), 2, 100).is_ok());
        assert!(matches!(o.push(frame(0), 2, 100), Err(QueueError::Full)), "frames over the limit");
        assert_eq!(o.try_frame(), Some(frame(60)));
        assert!(o.push(frame(10), 2, 100).is_ok(), "taking a frame frees its room");
        o.end();
        assert!(matches!(o.push(frame(1), 2, 100), Err(QueueError::Closed)));
        assert_eq!(o.try_frame(), None, "what was queued is freed at the end");
    }

    #[tokio::test]
    async fn a_waiting_task_wakes_for_a_push_from_another_task() {
        let o = Outbox::new();
        let o2 = o.clone();
        let waiter = tokio::spawn(async move { o2.next().await });
        tokio::task::yield_now().await;
        o.push(frame(5), 10, 100).ok().unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(got.expect("woken").expect("joined"), Next::Frame(frame(5)));
    }

    #[test]
    fn a_burst_is_freed_once_written() {
        let o = Outbox::new();
        for _ in 0..500 {
            o.push(frame(1), 1000, 1 << 20).ok().unwrap();
        }
        while o.try_frame().is_some() {}
        assert_eq!(o.lock().frames.capacity(), 0);
    }
}
