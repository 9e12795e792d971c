//! A client's outbound queue: encoded messages waiting for the socket writer.
//!
//! Bounded in bytes. Anyone may push (the hub fanning out, the session
//! replying) without waiting; when the queue overflows the client is marked
//! for disconnection with 3008 instead of slowing the pusher down. The writer
//! drains everything queued into frames, so bursts coalesce; with a write
//! delay it also waits a little for more (see `transport::websocket`).

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use tokio::sync::Notify;

use crate::protocol::codes::Disconnect;

pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer: new messages or a close.
    notify: Notify,
    /// Wakes the reader when the connection must close.
    closed: Notify,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    close: Option<Disconnect>,
}

impl Outbox {
    pub fn new(max_bytes: usize) -> Self {
        Outbox { state: Mutex::new(State::default()), notify: Notify::new(), closed: Notify::new(), max_bytes }
    }

    /// Queues one encoded message. Returns false if the client is closing or
    /// has just overflowed (then it is closed with 3008).
    pub fn push(&self, message: Bytes) -> bool {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        if state.bytes + message.len() > self.max_bytes {
            state.queue.clear();
            state.bytes = 0;
            state.close = Some(Disconnect::SLOW);
            drop(state);
            self.wake_all();
            return false;
        }
        state.bytes += message.len();
        let was_empty = state.queue.is_empty();
        state.queue.push_back(message);
        drop(state);
        // Only the first message of a batch needs to wake the writer: it
        // takes the whole queue under this lock, so a message pushed behind
        // others is taken with them. Saves a wake-up per push in bursts.
        if was_empty {
            self.notify.notify_one();
        }
        true
    }

    /// Asks for the connection to close; the first reason wins. Messages
    /// already queued are still written before the close frame.
    pub fn close(&self, reason: Disconnect) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(reason);
        }
        drop(state);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.notify.notify_one();
        self.closed.notify_waiters();
        self.closed.notify_one();
    }

    pub fn close_reason(&self) -> Option<Disconnect> {
        self.state.lock().close.clone()
    }

    /// Waits for something to write: moves every queued message into
    /// `batch` (which must be empty; the two queues swap, so neither side
    /// allocates per frame) and returns None, or returns the close reason
    /// once nothing is queued. Messages come before a pending close so that
    /// replies queued just before a disconnect still reach the client.
    pub async fn next(&self, batch: &mut VecDeque<Bytes>) -> Option<Disconnect> {
        debug_assert!(batch.is_empty());
        loop {
            {
                let mut state = self.state.lock();
                if !state.queue.is_empty() {
                    state.bytes = 0;
                    std::mem::swap(&mut state.queue, batch);
                    return None;
                }
                if let Some(reason) = state.close.clone() {
                    return Some(reason);
                }
            }
            self.notify.notified().await;
        }
    }

    /// Appends whatever was queued since [`next`](Self::next) to `batch`,
    /// without waiting: the writer's second look after its write delay.
    pub fn take_more(&self, batch: &mut VecDeque<Bytes>) {
        let mut state = self.state.lock();
        if state.queue.is_empty() {
            return;
        }
        state.bytes = 0;
        if batch.is_empty() {
            std::mem::swap(&mut state.queue, batch);
        } else {
            batch.extend(state.queue.drain(..));
        }
    }

    /// Resolves once the connection has been asked to close.
    pub async fn closing(&self) -> Disconnect {
        loop {
            let notified = self.closed.notified();
            if let Some(reason) = self.close_reason() {
                return reason;
            }
            notified.await;
        }
    }

    /// Bytes queued now (tests and the hub benchmark drain by it).
    pub fn queued_bytes(&self) -> usize {
        self.state.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn overflow_closes_with_slow() {
        let outbox = Outbox::new(10);
        assert!(outbox.push(Bytes::from_static(b"12345")));
        assert!(outbox.push(Bytes::from_static(b"12345")));
        assert!(!outbox.push(Bytes::from_static(b"1")));
        assert_eq!(outbox.close_reason(), Some(Disconnect::SLOW));
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(outbox.next(&mut VecDeque::new()).await, Some(Disconnect::SLOW));
        assert_eq!(outbox.closing().await, Disconnect::SLOW);
    }

    #[tokio::test]
    async fn drains_all_then_close() {
        let outbox = Outbox::new(100);
        outbox.push(Bytes::from_static(b"a"));
        outbox.push(Bytes::from_static(b"b"));
        outbox.close(Disconnect::SHUTDOWN);
        outbox.close(Disconnect::SLOW);
        let mut batch = VecDeque::new();
        assert_eq!(outbox.next(&mut batch).await, None, "messages first");
        assert_eq!(batch, ["a", "b"]);
        batch.clear();
        assert_eq!(outbox.next(&mut batch).await, Some(Disconnect::SHUTDOWN));
        assert!(!outbox.push(Bytes::from_static(b"c")));
    }

    #[tokio::test]
    async fn take_more_appends_in_order_and_frees_the_byte_budget() {
        let outbox = Outbox::new(4);
        outbox.push(Bytes::from_static(b"ab"));
        let mut batch = VecDeque::new();
        assert_eq!(outbox.next(&mut batch).await, None);
        outbox.take_more(&mut batch);
        assert_eq!(batch, ["ab"], "nothing more queued: unchanged");
        outbox.push(Bytes::from_static(b"cd"));
        outbox.push(Bytes::from_static(b"ef"));
        assert_eq!(outbox.queued_bytes(), 4);
        outbox.take_more(&mut batch);
        assert_eq!(batch, ["ab", "cd", "ef"]);
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_push_behind_others_is_still_taken() {
        // Only the first push of a batch notifies; the writer must still
        // see every message, also when it arrives after a drain.
        let outbox = Arc::new(Outbox::new(1000));
        let mut batch = VecDeque::new();
        for round in 0..3u8 {
            outbox.push(Bytes::from(vec![round; 1]));
            outbox.push(Bytes::from(vec![round; 2]));
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), outbox.next(&mut batch));
            assert_eq!(next.await.expect("writer woken"), None);
            assert_eq!(batch.len(), 2, "round {round}");
            batch.clear();
        }
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut batch = VecDeque::new();
                outbox.next(&mut batch).await;
                batch
            })
        };
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"x"));
        outbox.push(Bytes::from_static(b"y"));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.expect("woken").unwrap();
        assert!(!got.is_empty() && got[0] == "x", "{got:?}");
    }
}
