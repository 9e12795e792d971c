//! History reads on NATS: a channel's page and position from its stream
//! (direct gets by subject), and whether a client's position is still
//! covered (recovery).

use std::time::Instant;

use super::headers::{from_stored, marker_of};
use super::markers::Marker;
use super::streams::epoch_of;
use super::{unavailable, NatsBroker};
use crate::broker::history::{select, Page, Position, Query};
use crate::broker::BrokerError;
use async_nats::jetstream;

/// One history read's view of a namespace's stream: a single STREAM.INFO,
/// filtered to the channel's subject so it also counts the channel.
pub(super) struct Snapshot {
    pub(super) stream: jetstream::stream::Stream<()>,
    pub(super) epoch: String,
    /// Messages held for the channel: at most history_size + 1.
    pub(super) held: u64,
    pub(super) first_seq: u64,
    pub(super) last_seq: u64,
    /// Messages removed from inside the stream (trimmed per channel or
    /// purged). The server leaves the count out when it is 0.
    pub(super) deleted: u64,
}

impl NatsBroker {
    pub(super) async fn read_backed_history(&self, channel: &str, query: Query) -> Result<Page, BrokerError> {
        // Every position 0 handed out is backed by a marker (see
        // `write_marker`); when another write to the channel wins the race,
        // the page is read again, once.
        let mut raced = false;
        loop {
            let started = Instant::now();
            let (page, unbacked) = self.read_history(channel, &query).await?;
            let Some(snap) = unbacked.filter(|_| !raced) else { return Ok(page) };
            match self.mark_empty_channel(channel, &snap, started).await {
                Ok(Marker::Raced) => raced = true,
                Ok(_) => return Ok(page),
                Err(e) => {
                    // The page stands; only a later recovery from 0 may fail.
                    tracing::warn!(channel, "cannot mark position 0: {e}");
                    return Ok(page);
                }
            }
        }
    }

    /// Reads a channel's history stream state (see [`Snapshot`]), making the
    /// stream again if it was deleted (a new epoch).
    pub(super) async fn snapshot(&self, channel: &str, subject: &str) -> Result<Snapshot, BrokerError> {
        use jetstream::response::Response;
        let (size, ttl) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let namespace = crate::channels::namespace_of(channel);
        let name = self.subjects.stream_name(namespace);
        let request = serde_json::json!({ "subjects_filter": subject });
        let reply: Response<serde_json::Value> =
            self.jetstream.request(format!("STREAM.INFO.{name}"), &request).await.map_err(unavailable)?;
        let (info, held) = match reply {
            Response::Ok(value) => {
                // `state.subjects` (the per-subject counts) is not public in
                // async-nats' Info: read it from the JSON.
                let held = value["state"]["subjects"][subject].as_u64().unwrap_or(0);
                (serde_json::from_value::<jetstream::stream::Info>(value).map_err(unavailable)?, held)
            }
            Response::Err { error } if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {
                (self.ensure_stream(namespace, size, ttl).await?.cached_info().clone(), 0)
            }
            Response::Err { error } => return Err(unavailable(error)),
        };
        Ok(Snapshot {
            stream: self.jetstream.get_stream_no_info(&name).await.map_err(unavailable)?,
            epoch: epoch_of(&info),
            held,
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            deleted: info.state.deleted_count.unwrap_or(0),
        })
    }

    /// One read of a channel's history (see [`Broker::history`]); with the
    /// snapshot when it reports position 0 with no marker held to back it.
    pub(super) async fn read_history(
        &self,
        channel: &str,
        query: &Query,
    ) -> Result<(Page, Option<Snapshot>), BrokerError> {
        use jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
        let (size, _) = self.history.for_channel(channel).ok_or(BrokerError::NoHistory)?;
        let size = u64::from(size);
        let namespace = crate::channels::namespace_of(channel);
        let subject = self.subjects.channel_subject(channel);
        let snap = self.snapshot(channel, &subject).await?;
        let stream = &snap.stream;
        // The channel's last stored message: its sequence, and the position
        // it stands for (its own sequence, or a marker's position).
        let last = match snap.held {
            0 => None,
            _ => match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(msg) => Some((msg.sequence, marker_of(&msg.headers).unwrap_or(msg.sequence))),
                // Aged out or removed since the snapshot.
                Err(e) if e.kind() == NoMessageFound => None,
                Err(e) => return Err(unavailable(e)),
            },
        };
        let last_held = last.map(|(seq, _)| seq);
        // The position: the channel's last message, held, or when every one
        // aged out or was removed, as the meta stream kept it (0 for a fresh
        // channel, as Centrifugo answers).
        let top = match last {
            Some((_, position)) => position,
            None => self.meta_top(namespace, &snap, &subject).await?,
        };
        let position = Position { offset: top, epoch: snap.epoch.clone() };
        // The channel's oldest held message. A full channel holds
        // history_size + 1: the oldest is the anchor, never shown, only there
        // so that a client positioned at it (which missed exactly
        // history_size) can be told it missed nothing else. A recovery also
        // asks whether it is a marker.
        let oldest = match last_held.is_some() && (snap.held > size || query.since.is_some()) {
            true => match stream.raw_message_builder().sequence(1).next_by_subject(subject.clone()).send().await {
                Ok(msg) => Some((msg.sequence, marker_of(&msg.headers))),
                Err(e) if e.kind() == NoMessageFound => None,
                Err(e) => return Err(unavailable(e)),
            },
            false => None,
        };
        let anchor = oldest.filter(|_| snap.held > size).map(|(seq, _)| seq);
        // Read what the page can need, oldest first: at most history_size
        // messages, one request each (direct gets by subject); markers are
        // skipped (a marker other than the oldest shows a race, see
        // `write_marker`).
        let mut held = Vec::new();
        let mut other_marker = false;
        if let (true, Some(last_seq)) = (query.limit > 0, last_held) {
            let mut seq = match (&query.since, query.reverse) {
                (Some(since), false) => since.offset + 1,
                _ => 1,
            };
            if let Some(anchor) = anchor {
                seq = seq.max(anchor + 1);
            }
            while held.len() < size as usize && seq <= last_seq {
                let next = stream.raw_message_builder().sequence(seq).next_by_subject(subject.clone()).send().await;
                match next {
                    Ok(msg) => {
                        seq = msg.sequence + 1;
                        if marker_of(&msg.headers).is_none() {
                            held.push(from_stored(msg));
                        } else if oldest.is_some_and(|(first, _)| first != msg.sequence) {
                            other_marker = true;
                        }
                    }
                    Err(_) => break,
                }
                if !query.reverse && held.len() >= query.limit {
                    break;
                }
            }
        }
        // Stream sequences are shared by the namespace's channels, so "all
        // after `since` are held" is decided conservatively, and after the
        // reads: never claimed when publications may have been lost.
        let since_held = match &query.since {
            None => true,
            Some(since) => {
                // A held marker stands for the client's position: it is the
                // channel's oldest message (see `write_marker`), so every
                // later one is held. This is how a client given position 0
                // recovers, in any stream. (The reads above saw every held
                // message after it: at most history_size follow it, or the
                // page is over the recovery limit anyway.)
                (oldest.is_some_and(|(_, marker)| marker == Some(since.offset)) && !other_marker)
                // The publication at the client's offset (the anchor
                // included) is still held: all later ones are, since size and
                // age trim the oldest first and a removal takes all up to the
                // channel's last.
                || (since.offset > 0
                    && matches!(stream.get_raw_message(since.offset).await, Ok(m) if m.subject.as_str() == subject))
                // From the very beginning, without a marker (an application's
                // getState that sends offset 0): the stream never lost a
                // message (its first is still held, so nothing aged out, and
                // none was trimmed or purged from inside it), so every
                // publication the channel ever had is held.
                || (since.offset == 0
                    && snap.first_seq <= 1
                    && snap.deleted == 0
                    && stream.get_raw_message(1).await.is_ok_and(|m| m.sequence == 1))
            }
        };
        let mut page = select(held, position, query, since_held)?;
        // A position read from the meta stream proves "nothing missed" only
        // if the meta stream had sourced everything the history stream held:
        // a stalled source could have missed the channel's last publications
        // before they aged out.
        if page.continuous && last_held.is_none() && query.since.is_some() {
            let meta = self.meta_stream(namespace, &snap.epoch).await?;
            let wildcard = self.subjects.namespace_wildcard(namespace);
            if snap.last_seq > 0 && !self.meta_reaches(&meta, namespace, &wildcard, snap.last_seq).await? {
                tracing::warn!(channel, "history meta stream lags its history stream: recovery refused");
                page.continuous = false;
            }
        }
        let unbacked = top == 0 && last_held.is_none();
        Ok((page, unbacked.then_some(snap)))
    }
}
