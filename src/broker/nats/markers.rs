//! The meta-stream and position-marker protocol: how a channel's position
//! outlives its publications (the meta stream), and the hidden markers that
//! let a client at a position the stream no longer holds recover.

use async_nats::HeaderMap;
use bytes::Bytes;
use std::time::{Duration, Instant};

use super::headers::{marker_of, HEADER_POSITION};
use super::history::Snapshot;
use super::{unavailable, NatsBroker};
use crate::broker::BrokerError;
use async_nats::jetstream;

/// What [`NatsBroker::write_marker`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Marker {
    Written,
    /// The channel held a message (another write came first).
    Raced,
    /// Not written, or taken back (see the log).
    Skipped,
}

impl NatsBroker {
    pub(super) async fn remove_channel_history(&self, channel: &str) -> Result<(), BrokerError> {
        use jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
        let (stream, epoch) = self.stream_of(channel).await?;
        let namespace = crate::channels::namespace_of(channel);
        let subject = self.subjects.channel_subject(channel);
        let (last, position) = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(msg) => (msg.sequence, marker_of(&msg.headers).unwrap_or(msg.sequence)),
            Err(e) if e.kind() == NoMessageFound => return Ok(()),
            Err(e) => return Err(unavailable(e)),
        };
        // The position must survive the removal, in the meta stream, which
        // sources asynchronously: wait until it has the last publication.
        let meta = self.meta_stream(namespace, &epoch).await?;
        let kept = self.meta_reaches(&meta, namespace, &subject, last).await?;
        if !kept {
            // It lags: forget the channel's position there rather than keep
            // an older one, which would tell a client that missed `last` it
            // missed nothing. If even that fails, remove nothing.
            tracing::warn!(channel, "history meta stream lags: the channel's position is not kept");
            meta.purge().filter(subject.clone()).await.map_err(unavailable)?;
        }
        // Up to `last` only, what the meta stream has: a publication racing
        // this removal stays, as if it came just after.
        let started = Instant::now();
        stream.purge().filter(subject.clone()).sequence(last + 1).await.map_err(unavailable)?;
        if !kept {
            // One the lagging source delivered meanwhile would be older.
            if let Err(e) = meta.purge().filter(subject.clone()).await {
                tracing::warn!(channel, "cannot clear the channel's position in the meta stream: {e}");
            }
        }
        // A marker for the removed position: clients at it keep recovering,
        // and the channel never looks empty, so no marker for 0 can follow
        // and hide the removal from clients at 0. A publication stored
        // meanwhile moves the position on by itself (the marker is dropped).
        if let Err(e) = self.write_marker(channel, position, started).await {
            tracing::warn!(channel, "history removed, but its position marker could not be stored: {e}");
        }
        Ok(())
    }

    /// Polls the meta stream until its last message on `subject` (a channel
    /// subject or the namespace wildcard) was sourced from history sequence
    /// `seq` or later; false after [`META_WAIT`].
    pub(super) async fn meta_reaches(
        &self,
        meta: &jetstream::stream::Stream<()>,
        namespace: &str,
        subject: &str,
        seq: u64,
    ) -> Result<bool, BrokerError> {
        let history = self.subjects.stream_name(namespace);
        let deadline = Instant::now() + META_WAIT;
        let mut pause = Duration::from_millis(1);
        loop {
            match meta.get_last_raw_message_by_subject(subject).await {
                Ok(msg) if source_sequence(&msg.headers, &history).is_some_and(|s| s >= seq) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) if is_stream_not_found(&e) => {
                    self.meta_checked.lock().remove(namespace);
                    return Ok(false);
                }
                Err(e) => return Err(unavailable(e)),
            }
            if Instant::now() + pause > deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The position of a channel the history stream holds nothing of (all
    /// aged out or removed): the history sequence of its last publication,
    /// as the meta stream of this incarnation kept it (a marker: the position
    /// it stands for); 0 when it kept none.
    pub(super) async fn meta_top(&self, namespace: &str, snap: &Snapshot, subject: &str) -> Result<u64, BrokerError> {
        let meta = self.meta_stream(namespace, &snap.epoch).await?;
        let history = self.subjects.stream_name(namespace);
        match meta.get_last_raw_message_by_subject(subject).await {
            // Never past the history's own last sequence (that would be
            // another incarnation's).
            Ok(msg) => {
                let seq = source_sequence(&msg.headers, &history).filter(|s| *s <= snap.last_seq);
                Ok(seq.map(|seq| marker_of(&msg.headers).unwrap_or(seq)).unwrap_or(0))
            }
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) if is_stream_not_found(&e) => {
                self.meta_checked.lock().remove(namespace);
                Ok(0)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Backs position 0 of a channel that holds nothing with a marker, once
    /// the meta stream shows the channel really has no later position.
    pub(super) async fn mark_empty_channel(
        &self,
        channel: &str,
        snap: &Snapshot,
        started: Instant,
    ) -> Result<Marker, BrokerError> {
        let namespace = crate::channels::namespace_of(channel);
        let meta = self.meta_stream(namespace, &snap.epoch).await?;
        let wildcard = self.subjects.namespace_wildcard(namespace);
        if snap.last_seq > 0 && !self.meta_reaches(&meta, namespace, &wildcard, snap.last_seq).await? {
            tracing::warn!(channel, "history meta stream lags its history stream: position 0 not marked");
            return Ok(Marker::Skipped);
        }
        // Read again now that the meta stream is known to be current.
        if self.meta_top(namespace, snap, &self.subjects.channel_subject(channel)).await? != 0 {
            return Ok(Marker::Raced);
        }
        self.write_marker(channel, 0, started).await
    }

    /// Stores a marker standing for channel position `position`, kept only
    /// if it is then the channel's oldest message (else it is deleted and
    /// the write lost a race). A removal's marker takes precedence over a
    /// marker for 0 older than it, which is deleted instead. (JetStream's
    /// `Nats-Expected-Last-Subject-Sequence` would check this atomically, but
    /// nats-server 2.9 applies it again to the copy the meta stream sources,
    /// which then stalls.)
    ///
    /// The invariant that makes recovery from a marker sound: a marker is
    /// kept only while nothing of the channel is older, so while held it is
    /// the channel's oldest message, and since ttl and size trim the oldest
    /// first and a removal takes everything up to the channel's last, every
    /// message stored after it is held too. A client at the position a held
    /// marker stands for has lost nothing, provided no publication of the
    /// channel lies between that position and the marker:
    /// - a removal's marker stands for the removed last publication and is
    ///   written right after the purge;
    /// - a marker for 0 is written only when the channel's last message,
    ///   held or kept by the meta stream, is a marker for 0 or there is
    ///   none, read after the meta stream has sourced the whole history
    ///   stream. A publication stored after that read is older than the
    ///   marker, so the marker is deleted, unless the publication is gone by
    ///   then: aged out, which takes history_ttl (the marker is taken back
    ///   when the write took that long), or removed, which leaves the
    ///   removal's marker after it. Recovery therefore also requires that
    ///   no other marker is held (see `read_history`).
    ///
    /// What remains is a channel whose every trace also aged out of the
    /// meta stream (history_meta_ttl, 720 h by default), like Centrifugo,
    /// where such a channel starts a new epoch.
    pub(super) async fn write_marker(
        &self,
        channel: &str,
        position: u64,
        started: Instant,
    ) -> Result<Marker, BrokerError> {
        use jetstream::stream::LastRawMessageErrorKind::NoMessageFound;
        let Some((_, ttl)) = self.history.for_channel(channel) else { return Ok(Marker::Skipped) };
        let subject = self.subjects.channel_subject(channel);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_POSITION, position.to_string().as_str());
        let sent = self.jetstream.publish_with_headers(subject.clone(), headers, Bytes::new()).await;
        let seq = match sent {
            Ok(ack) => ack.await.map_err(unavailable)?.sequence,
            Err(e) => return Err(unavailable(e)),
        };
        let namespace = crate::channels::namespace_of(channel);
        let stream =
            self.jetstream.get_stream_no_info(self.subjects.stream_name(namespace)).await.map_err(unavailable)?;
        let delete = |seq: u64| {
            let stream = &stream;
            async move {
                match stream.delete_message(seq).await {
                    Ok(_) => Ok(()),
                    // Already gone (aged out, purged): as good.
                    Err(e) if message_gone(&e) => Ok(()),
                    Err(e) => Err(unavailable(e)),
                }
            }
        };
        if started.elapsed() >= ttl {
            tracing::warn!(channel, "storing a position marker took longer than history_ttl: taken back");
            delete(seq).await?;
            return Ok(Marker::Skipped);
        }
        for _ in 0..3 {
            let oldest = match stream.raw_message_builder().sequence(1).next_by_subject(subject.clone()).send().await {
                Ok(msg) => msg,
                Err(e) if e.kind() == NoMessageFound => return Ok(Marker::Skipped),
                Err(e) => return Err(unavailable(e)),
            };
            if oldest.sequence == seq {
                return Ok(Marker::Written);
            }
            if position == 0 || marker_of(&oldest.headers) != Some(0) {
                delete(seq).await?;
                return Ok(Marker::Raced);
            }
            // A marker for 0 slipped in between a removal's purge and its
            // marker: it would tell clients at 0 they missed nothing.
            delete(oldest.sequence).await?;
        }
        delete(seq).await?;
        Ok(Marker::Raced)
    }
}

/// How long a history read or removal waits for the meta stream to source
/// a publication. Sourcing takes a fraction of a millisecond on a healthy
/// server; past this the meta stream is taken to be stalled.
const META_WAIT: Duration = Duration::from_millis(300);

/// The history sequence of a message the meta stream sourced from stream
/// `history`. nats-server 2.9 sets `Nats-Stream-Source: <stream> <sequence>`;
/// later versions append fields, and suffix the name with `:<hash>` for
/// external sources. Anything else is not trusted.
fn source_sequence(headers: &HeaderMap, history: &str) -> Option<u64> {
    let value = headers.get("Nats-Stream-Source")?;
    let mut fields = value.as_str().split_whitespace();
    let name = fields.next()?;
    if name.split(':').next() != Some(history) {
        return None;
    }
    fields.next()?.parse().ok()
}

/// A delete failed because the message is no longer there (nats-server 2.9
/// answers 10057 "no message found"; later versions may use 10037).
fn message_gone(e: &jetstream::stream::DeleteMessageError) -> bool {
    use jetstream::ErrorCode;
    match e.kind() {
        jetstream::stream::DeleteMessageErrorKind::JetStream(j) => {
            j.error_code() == ErrorCode::NO_MESSAGE_FOUND
                || j.error_code() == ErrorCode::SEQUENCE_NOT_FOUND
                || (j.error_code() == ErrorCode::STREAM_MESSAGE_DELETE_FAILED && j.to_string().contains("no message"))
        }
        _ => false,
    }
}

fn is_stream_not_found(e: &jetstream::stream::LastRawMessageError) -> bool {
    matches!(e.kind(), jetstream::stream::LastRawMessageErrorKind::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Stream-Source", value);
        headers
    }

    #[test]
    fn source_sequence_reads_the_origin_sequence() {
        // As nats-server 2.9.10 writes it (seen in its sourced messages).
        assert_eq!(source_sequence(&source("natsgate_chat 42"), "natsgate_chat"), Some(42));
        // Later servers append fields, external sources a hash to the name.
        assert_eq!(source_sequence(&source("natsgate_chat 42 > >"), "natsgate_chat"), Some(42));
        assert_eq!(source_sequence(&source("natsgate_chat:a1b2 42"), "natsgate_chat"), Some(42));
        for bad in ["natsgate_chat2 42", "other 42", "natsgate_chat", "natsgate_chat x", "", " 42"] {
            assert_eq!(source_sequence(&source(bad), "natsgate_chat"), None, "{bad:?}");
        }
        assert_eq!(source_sequence(&HeaderMap::new(), "natsgate_chat"), None);
    }
}
