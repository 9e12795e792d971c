//! Puts a history channel's republished messages back in stream order.
//!
//! nats-server before 2.10 (Debian's 2.9.10 among them) stores a message
//! under the stream's lock but queues its republish after releasing it
//! (`processJetStreamMsg` in server/stream.go), so publications stored at
//! the same time by two NATS connections (two gateways, or a backend
//! publishing straight to NATS) can be republished in the opposite order of
//! their sequences. Passed on as they come, a subscriber sees offsets go
//! back, and the hub reads the inversion as a gap (unsubscribe 2500 for
//! positioned subscribers). Each republished message names the channel's
//! previous sequence (`Nats-Last-Sequence`, read before storing, under the
//! lock), so the messages form a chain per channel: one whose predecessor
//! has not come yet is held until it does, for at most [`HOLD`], after
//! which the gap is real (a message lost while reconnecting) and what is
//! held goes on in offset order for the hub to notice the gap.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

use crate::broker::Message;

/// How long a message waits for its predecessor. The inversions seen on
/// 2.9.10 spanned up to ~40 ms (about 100 offsets at 2,300 publications a
/// second); a real gap delays the messages after it this much.
pub(super) const HOLD: Duration = Duration::from_millis(250);

/// At most this many messages are held; one more lets them all go.
pub(super) const MAX_HELD: usize = 1024;

/// One channel subscription's reordering state.
#[derive(Default)]
pub(super) struct Reorder {
    /// The last stored offset handed on (0: none yet).
    last: u64,
    /// Held messages by offset, waiting for their predecessors.
    held: BTreeMap<u64, Message>,
    /// When the oldest held message stops waiting.
    deadline: Option<Instant>,
}

impl Reorder {
    /// Takes one message; returns those that may go on now, in order.
    pub(super) fn push(&mut self, message: Message, now: Instant) -> Vec<Message> {
        // Not stored (events, skip_history): no place in the chain.
        if message.offset == 0 {
            return vec![message];
        }
        let prev = message.prev_offset.unwrap_or(0);
        if self.last == 0 || prev <= self.last || message.offset <= self.last {
            // The first one seen, its predecessor went on already (or the
            // channel starts afresh: prev 0 after a removal or a new stream),
            // or it comes after its hold ran out: on it goes.
            if message.offset > self.last || prev == 0 {
                self.last = message.offset;
            }
            let mut out = vec![message];
            self.release_ready(&mut out);
            return out;
        }
        self.held.insert(message.offset, message);
        if self.held.len() > MAX_HELD {
            return self.release_all();
        }
        self.deadline.get_or_insert(now + HOLD);
        Vec::new()
    }

    /// When held messages stop waiting, if any are held.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The hold ran out: everything held goes on, in offset order.
    pub(super) fn release_all(&mut self) -> Vec<Message> {
        self.deadline = None;
        let held = std::mem::take(&mut self.held);
        if let Some(&last) = held.keys().next_back() {
            self.last = self.last.max(last);
        }
        held.into_values().collect()
    }

    /// Moves held messages whose predecessor has gone on into `out`.
    fn release_ready(&mut self, out: &mut Vec<Message>) {
        // The smallest held offset is the only candidate: a later message's
        // predecessor is at least that offset, which has not gone on.
        while let Some(entry) = self.held.first_entry() {
            if entry.get().prev_offset.unwrap_or(0) > self.last {
                break;
            }
            let message = entry.remove();
            self.last = self.last.max(message.offset);
            out.push(message);
        }
        if self.held.is_empty() {
            self.deadline = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(offset: u64, prev: u64) -> Message {
        Message { offset, prev_offset: Some(prev), ..Default::default() }
    }

    fn offsets(out: &[Message]) -> Vec<u64> {
        out.iter().map(|m| m.offset).collect()
    }

    #[test]
    fn in_order_passes_straight_through() {
        let mut r = Reorder::default();
        let now = Instant::now();
        for (o, p) in [(5, 3), (6, 5), (9, 6)] {
            assert_eq!(offsets(&r.push(m(o, p), now)), [o]);
        }
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn an_inversion_is_put_back_in_order() {
        let mut r = Reorder::default();
        let now = Instant::now();
        assert_eq!(offsets(&r.push(m(10, 0), now)), [10]);
        assert!(r.push(m(12, 11), now).is_empty(), "held until 11 comes");
        assert!(r.push(m(13, 12), now).is_empty());
        assert_eq!(r.deadline(), Some(now + HOLD));
        assert_eq!(offsets(&r.push(m(11, 10), now)), [11, 12, 13]);
        assert_eq!(r.deadline(), None);
        assert_eq!(offsets(&r.push(m(14, 13), now)), [14]);
    }

    #[test]
    fn a_real_gap_lets_go_after_the_hold_and_a_late_one_still_passes() {
        let mut r = Reorder::default();
        let now = Instant::now();
        r.push(m(1, 0), now);
        assert!(r.push(m(3, 2), now).is_empty());
        assert!(r.push(m(4, 3), now).is_empty());
        assert_eq!(offsets(&r.release_all()), [3, 4]);
        assert_eq!(offsets(&r.push(m(5, 4), now)), [5]);
        // The lost one turns up after all: passed on, the chain unchanged.
        assert_eq!(offsets(&r.push(m(2, 1), now)), [2]);
        assert_eq!(offsets(&r.push(m(6, 5), now)), [6]);
    }

    #[test]
    fn unstored_and_restarted_channels_pass() {
        let mut r = Reorder::default();
        let now = Instant::now();
        r.push(m(50, 49), now);
        let event = Message::default();
        assert_eq!(r.push(event.clone(), now), [event]);
        // History removed or the stream recreated: the chain starts again.
        assert_eq!(offsets(&r.push(m(3, 0), now)), [3]);
        assert_eq!(offsets(&r.push(m(4, 3), now)), [4]);
    }

    #[test]
    fn holding_is_bounded() {
        let mut r = Reorder::default();
        let now = Instant::now();
        r.push(m(1, 0), now);
        for o in 3..3 + MAX_HELD as u64 {
            assert!(r.push(m(o, o - 1), now).is_empty());
        }
        let out = r.push(m(3 + MAX_HELD as u64, 2 + MAX_HELD as u64), now);
        assert_eq!(out.len(), MAX_HELD + 1);
        assert!(out.windows(2).all(|w| w[0].offset < w[1].offset));
    }
}
