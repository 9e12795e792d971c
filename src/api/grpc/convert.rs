//! Conversions between the GRPC API's protobuf messages and the typed
//! [`Command`]s (the request shapes of `request.rs`, shared with the HTTP
//! API) and [`Reply`]s of `methods.rs`. No method logic lives here.

use bytes::Bytes;
use std::collections::HashMap;

use super::proto;
use crate::api::error::ApiError;
use crate::api::methods::Reply;
use crate::api::request::{self, Command};
use crate::broker::{Message, Position};
use crate::map::api::{self as map_api, MapRequest, MapResult};
use crate::protocol::codes::ErrorCode;

/// An [`ApiError`] as the `Error` message.
pub(super) fn error(e: ApiError) -> proto::Error {
    proto::Error { code: e.0.code, message: e.0.message.to_string() }
}

/// A batch command: the first request field set; none (Centrifugo's other
/// methods included) is error 104, as Centrifugo answers.
pub(super) fn command(c: proto::Command) -> Result<Command, ApiError> {
    let command = None
        .or(c.publish.map(Into::into))
        .or(c.broadcast.map(Into::into))
        .or(c.subscribe.map(Into::into))
        .or(c.unsubscribe.map(Into::into))
        .or(c.disconnect.map(Into::into))
        .or(c.history.map(Into::into))
        .or(c.history_remove.map(Into::into))
        .or(c.presence.map(Into::into))
        .or(c.presence_stats.map(Into::into))
        .or(c.info.map(Into::into))
        .or(c.refresh.map(Into::into))
        .or(c.channels.map(Into::into))
        .or(c.map_publish.map(Into::into))
        .or(c.map_remove.map(Into::into))
        .or(c.map_read_state.map(Into::into))
        .or(c.map_read_stream.map(Into::into))
        .or(c.map_stats.map(Into::into))
        .or(c.map_clear.map(Into::into))
        .or(c.shared_poll_publish.map(Into::into));
    command.ok_or(ApiError(ErrorCode::METHOD_NOT_FOUND))
}

/// Empty `data` is no `data` (protobuf cannot tell them apart); JSON's raw
/// `data` text and GRPC's bytes share `request::Publish::data`.
fn data(data: Bytes) -> Option<Bytes> {
    (!data.is_empty()).then_some(data)
}

impl From<proto::PublishRequest> for Command {
    fn from(r: proto::PublishRequest) -> Command {
        Command::Publish(request::Publish {
            channel: r.channel,
            data: data(r.data),
            b64data: r.b64data,
            tags: r.tags,
            skip_history: r.skip_history,
            idempotency_key: r.idempotency_key,
            delta: r.delta,
        })
    }
}

impl From<proto::BroadcastRequest> for Command {
    fn from(r: proto::BroadcastRequest) -> Command {
        Command::Broadcast(request::Broadcast {
            channels: r.channels,
            data: data(r.data),
            b64data: r.b64data,
            tags: r.tags,
            skip_history: r.skip_history,
            idempotency_key: r.idempotency_key,
            delta: r.delta,
        })
    }
}

impl From<proto::SubscribeRequest> for Command {
    fn from(r: proto::SubscribeRequest) -> Command {
        Command::Subscribe(request::UserChannel {
            user: r.user,
            channel: r.channel,
            client: r.client,
            ..Default::default()
        })
    }
}

impl From<proto::UnsubscribeRequest> for Command {
    fn from(r: proto::UnsubscribeRequest) -> Command {
        Command::Unsubscribe(request::UserChannel {
            user: r.user,
            channel: r.channel,
            client: r.client,
            ..Default::default()
        })
    }
}

impl From<proto::DisconnectRequest> for Command {
    fn from(r: proto::DisconnectRequest) -> Command {
        Command::Disconnect(request::Disconnect {
            user: r.user,
            client: r.client,
            whitelist: r.whitelist,
            disconnect: r.disconnect.map(|d| request::DisconnectCode { code: d.code, reason: d.reason }),
            ..Default::default()
        })
    }
}

impl From<proto::RefreshRequest> for Command {
    fn from(r: proto::RefreshRequest) -> Command {
        Command::Refresh(request::Refresh {
            user: r.user,
            client: r.client,
            expired: r.expired,
            expire_at: r.expire_at,
            ..Default::default()
        })
    }
}

impl From<proto::ChannelsRequest> for Command {
    fn from(r: proto::ChannelsRequest) -> Command {
        Command::Channels(request::Channels { pattern: r.pattern })
    }
}

impl From<proto::InfoRequest> for Command {
    fn from(_: proto::InfoRequest) -> Command {
        Command::Info
    }
}

impl From<proto::PresenceRequest> for Command {
    fn from(r: proto::PresenceRequest) -> Command {
        Command::Presence(request::ChannelOnly { channel: r.channel })
    }
}

impl From<proto::PresenceStatsRequest> for Command {
    fn from(r: proto::PresenceStatsRequest) -> Command {
        Command::PresenceStats(request::ChannelOnly { channel: r.channel })
    }
}

impl From<proto::HistoryRequest> for Command {
    fn from(r: proto::HistoryRequest) -> Command {
        Command::History(request::History {
            channel: r.channel,
            limit: r.limit,
            since: r.since.map(|s| request::StreamPosition { offset: s.offset, epoch: s.epoch }),
            reverse: r.reverse,
        })
    }
}

impl From<proto::HistoryRemoveRequest> for Command {
    fn from(r: proto::HistoryRemoveRequest) -> Command {
        Command::HistoryRemove(request::ChannelOnly { channel: r.channel })
    }
}

fn publish_result(position: Option<Position>) -> proto::PublishResult {
    let position = position.unwrap_or_default();
    proto::PublishResult { offset: position.offset, epoch: position.epoch }
}

fn client_info(info: crate::protocol::ClientInfo) -> proto::ClientInfo {
    proto::ClientInfo { user: info.user, client: info.client, conn_info: info.conn_info, chan_info: info.chan_info }
}

fn publication(m: Message) -> proto::Publication {
    proto::Publication { data: m.data, info: m.info.map(client_info), offset: m.offset, tags: m.tags }
}

fn count(n: u64) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
}

/// A method's outcome as a batch reply: the error, or the result in the
/// method's field.
pub(super) fn reply(outcome: Result<Reply, ApiError>) -> proto::Reply {
    let mut out = proto::Reply::default();
    match outcome {
        Err(e) => out.error = Some(error(e)),
        Ok(Reply::Publish(position)) => out.publish = Some(publish_result(position)),
        Ok(Reply::Broadcast(outcomes)) => {
            let responses = outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    Ok(position) => proto::PublishResponse { error: None, result: Some(publish_result(position)) },
                    Err(e) => proto::PublishResponse { error: Some(error(e)), result: None },
                })
                .collect();
            out.broadcast = Some(proto::BroadcastResult { responses });
        }
        Ok(Reply::Subscribe) => out.subscribe = Some(proto::SubscribeResult {}),
        Ok(Reply::Unsubscribe) => out.unsubscribe = Some(proto::UnsubscribeResult {}),
        Ok(Reply::Disconnect) => out.disconnect = Some(proto::DisconnectResult {}),
        Ok(Reply::Refresh) => out.refresh = Some(proto::RefreshResult {}),
        Ok(Reply::HistoryRemove) => out.history_remove = Some(proto::HistoryRemoveResult {}),
        Ok(Reply::Channels(channels)) => {
            let channels: HashMap<String, proto::ChannelInfo> =
                channels.into_iter().map(|(c, n)| (c, proto::ChannelInfo { num_clients: count(n) })).collect();
            out.channels = Some(proto::ChannelsResult { channels });
        }
        Ok(Reply::Info(nodes)) => {
            let nodes = nodes
                .into_iter()
                .map(|n| proto::NodeResult {
                    uid: n.uid,
                    name: n.name,
                    version: n.version,
                    num_clients: count(n.num_clients),
                    num_users: count(n.num_users),
                    num_channels: count(n.num_channels),
                    uptime: count(n.uptime),
                    num_subs: count(n.num_subs),
                })
                .collect();
            out.info = Some(proto::InfoResult { nodes });
        }
        Ok(Reply::Presence(presence)) => {
            let presence = presence.into_iter().map(|(id, info)| (id, client_info(info))).collect();
            out.presence = Some(proto::PresenceResult { presence });
        }
        Ok(Reply::PresenceStats { num_clients, num_users }) => {
            out.presence_stats = Some(proto::PresenceStatsResult { num_clients, num_users });
        }
        Ok(Reply::Map(result)) => map_reply(&mut out, result),
        Ok(Reply::SharedPollPublish) => out.shared_poll_publish = Some(proto::SharedPollPublishResult {}),
        Ok(Reply::History(page)) => {
            out.history = Some(proto::HistoryResult {
                publications: page.publications.into_iter().map(publication).collect(),
                epoch: page.position.epoch,
                offset: page.position.offset,
            });
        }
    }
    out
}

impl From<proto::MapPublishRequest> for Command {
    fn from(r: proto::MapPublishRequest) -> Command {
        Command::Map(MapRequest::Publish(Box::new(map_api::MapPublish {
            channel: r.channel,
            key: r.key,
            data: data(r.data),
            b64data: r.b64data,
            stream_data: data(r.stream_data),
            b64stream_data: r.b64stream_data,
            tags: r.tags,
            idempotency_key: r.idempotency_key,
            delta: r.delta,
            version: r.version,
            version_epoch: r.version_epoch,
            score: r.score,
            key_mode: r.key_mode,
        })))
    }
}

impl From<proto::MapRemoveRequest> for Command {
    fn from(r: proto::MapRemoveRequest) -> Command {
        Command::Map(MapRequest::Remove(map_api::MapRemove {
            channel: r.channel,
            key: r.key,
            idempotency_key: r.idempotency_key,
        }))
    }
}

impl From<proto::MapReadStateRequest> for Command {
    fn from(r: proto::MapReadStateRequest) -> Command {
        Command::Map(MapRequest::ReadState(map_api::MapReadState {
            channel: r.channel,
            cursor: r.cursor,
            limit: r.limit,
            key: r.key,
            asc: r.asc,
            revision_offset: r.revision_offset,
            revision_epoch: r.revision_epoch,
        }))
    }
}

impl From<proto::MapReadStreamRequest> for Command {
    fn from(r: proto::MapReadStreamRequest) -> Command {
        Command::Map(MapRequest::ReadStream(map_api::MapReadStream {
            channel: r.channel,
            since_offset: r.since_offset,
            since_epoch: r.since_epoch,
            limit: r.limit,
            reverse: r.reverse,
        }))
    }
}

impl From<proto::MapStatsRequest> for Command {
    fn from(r: proto::MapStatsRequest) -> Command {
        Command::Map(MapRequest::Stats(map_api::MapChannel { channel: r.channel }))
    }
}

impl From<proto::MapClearRequest> for Command {
    fn from(r: proto::MapClearRequest) -> Command {
        Command::Map(MapRequest::Clear(map_api::MapChannel { channel: r.channel }))
    }
}

fn map_entry(e: map_api::MapEntryOut) -> proto::MapEntry {
    proto::MapEntry {
        key: e.key,
        data: e.data,
        tags: e.tags,
        offset: e.offset,
        score: 0,
        removed: e.removed,
        time: e.time,
    }
}

/// A map method's result in its field of the batch reply.
fn map_reply(out: &mut proto::Reply, result: MapResult) {
    match result {
        MapResult::Update { method, position, suppress_reason } => {
            let (suppressed, suppress_reason) = (suppress_reason.is_some(), suppress_reason.unwrap_or("").to_string());
            if method == "map_remove" {
                out.map_remove = Some(proto::MapRemoveResult {
                    offset: position.offset,
                    epoch: position.epoch,
                    suppressed,
                    suppress_reason,
                });
            } else {
                out.map_publish = Some(proto::MapPublishResult {
                    offset: position.offset,
                    epoch: position.epoch,
                    suppressed,
                    suppress_reason,
                });
            }
        }
        MapResult::State { entries, position, cursor } => {
            out.map_read_state = Some(proto::MapReadStateResult {
                entries: entries.into_iter().map(map_entry).collect(),
                offset: position.offset,
                epoch: position.epoch,
                cursor,
            });
        }
        MapResult::Stream { entries, position } => {
            out.map_read_stream = Some(proto::MapReadStreamResult {
                entries: entries.into_iter().map(map_entry).collect(),
                offset: position.offset,
                epoch: position.epoch,
            });
        }
        MapResult::Stats { num_keys } => out.map_stats = Some(proto::MapStatsResult { num_keys }),
        MapResult::Clear => out.map_clear = Some(proto::MapClearResult {}),
    }
}

impl From<proto::SharedPollPublishRequest> for Command {
    fn from(r: proto::SharedPollPublishRequest) -> Command {
        Command::SharedPollPublish(crate::shared_poll::api::Publish {
            channel: r.channel,
            key: r.key,
            data: data(r.data),
            b64data: r.b64data,
            version: r.version,
            epoch: r.epoch,
        })
    }
}
