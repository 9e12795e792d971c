//! The allow-list: every known difference between natsgate and Centrifugo
//! v6.9.1, with its reason. It mirrors the README's "Deviations" section;
//! a difference not covered here fails the differential tests, and an entry
//! that no scenario needs any more fails them too (see `group::check_stale`),
//! so a fixed difference leaves the list and the README.

use super::compare::glob;
use super::runner::Kind;

/// Which natsgate targets an entry applies to.
pub const EMBEDDED: &[Kind] = &[Kind::Embedded];
pub const NATS: &[Kind] = &[Kind::Nats];
pub const BOTH: &[Kind] = &[Kind::Embedded, Kind::Nats];

/// One allowed difference: in scenarios matching `scenario`, at places
/// (`<step label>: <json path>`) matching `at` (`|` separates
/// alternatives), on `targets`.
#[derive(Debug)]
pub struct Allowed {
    pub scenario: &'static str,
    pub at: &'static str,
    pub targets: &'static [Kind],
    pub reason: &'static str,
}

impl Allowed {
    pub fn covers(&self, scenario: &str, kind: Kind, at: &str) -> bool {
        self.targets.contains(&kind)
            && self.scenario.split('|').any(|p| glob(p, scenario))
            && self.at.split('|').any(|p| glob(p, at))
    }
}

pub static ALLOWED: &[Allowed] = &[
    Allowed {
        scenario: "*",
        at: "* recv *: .msg.connect.node",
        targets: BOTH,
        reason: "natsgate names the gateway in the connect reply's `node`; Centrifugo fills it only for \
                 emulation transports. SDKs ignore it on WebSocket; it tells which gateway a client reached",
    },
    Allowed {
        scenario: "ping command *",
        at: "*",
        targets: BOTH,
        reason: "a `ping` command with an id: natsgate answers `{\"ping\":{}}`; Centrifugo v6.9.1 closes with \
                 3501 (its command dispatch has no frame type for ping, so handlePing is unreachable). \
                 No SDK sends it (protocol v2 pings are server-sent `{}`)",
    },
    Allowed {
        scenario: "token expire*|token channels unknown namespace*",
        at: "4 recv a: *|5 quiet a: *",
        targets: BOTH,
        reason: "after a refused connect (error 109) natsgate closes with 3501 at the next command; Centrifugo \
                 marks the connection unusable, stops reading it and closes it on the stale timer \
                 (client.stale_close_delay). Either way the connection is dead; SDKs open a new one",
    },
    Allowed {
        scenario: "token nbf in the future*",
        at: "4 recv a: *|5 quiet a: *",
        targets: BOTH,
        reason: "as for `token expire*`: what follows a refused connect",
    },
    Allowed {
        scenario: "token b64info not standard base64*",
        at: "*",
        targets: BOTH,
        reason: "a `b64info` claim that is not standard base64: Centrifugo answers error 100 (internal, temporary, \
                 so SDKs retry forever); natsgate closes with 3500 (invalid token), as for any malformed claim",
    },
    Allowed {
        scenario: "*",
        at: "*pub.epoch|*publications[*].epoch",
        targets: BOTH,
        reason: "Centrifugo v6.9 also puts the stream epoch in each publication of a history channel \
                 (Publication.epoch, field 14 of protocol v0.19, for map subscriptions); natsgate gives the epoch \
                 in subscribe and history replies only, where centrifuge-js 5.8 reads it",
    },
    Allowed {
        scenario: "channel too long *",
        at: "6 recv a: .msg.*",
        targets: BOTH,
        reason: "natsgate refuses every command on a channel longer than channel_max_length (107); Centrifugo checks \
                 the length on subscribe only, so a publish to a channel nobody can subscribe to succeeds",
    },
    Allowed {
        scenario: "history *",
        at: "29 recv a: *",
        targets: BOTH,
        reason: "history `since` a future offset of the right epoch: natsgate answers 112 (unrecoverable position, \
                 as its README says); Centrifugo's memory engine answers an empty list and the current position",
    },
    Allowed {
        scenario: "history *",
        at: "31 recv a: .msg.history.epoch",
        targets: BOTH,
        reason: "after history_remove Centrifugo's memory engine starts a new stream (new epoch); natsgate keeps \
                 the channel's epoch and position (the meta stream), so clients are not forced to resubscribe",
    },
    Allowed {
        scenario: "positioning *",
        at: "7 recv a: .msg.subscribe.*",
        targets: BOTH,
        reason: "positioned/recoverable asked on a namespace without history: Centrifugo answers positioned and \
                 recoverable with its memory engine's epoch; natsgate has no stream there and ignores the flags \
                 (it also refuses allow_recovery/allow_positioning without history_size/history_ttl at startup)",
    },
    Allowed {
        scenario: "api broadcast*",
        at: "* POST /api/*: *.epoch",
        targets: BOTH,
        reason: "epochs: natsgate's epoch belongs to a namespace's stream (NATS) or to the process (embedded); Centrifugo's memory engine has one per channel. Clients only compare a channel's epoch with that channel's",
    },
    Allowed {
        scenario: "api broadcast no data",
        at: "0 POST /api/broadcast: .body.*",
        targets: BOTH,
        reason: "broadcast without data: natsgate refuses the whole call (107); Centrifugo answers 107 per channel in `responses`",
    },
    Allowed {
        scenario: "api batch unknown command",
        at: "0 POST /api/batch: .body.replies[0].error.message",
        targets: BOTH,
        reason: "error 104's message: natsgate says `method not found`, Centrifugo's batch says `not found`; the code is the same",
    },
    Allowed {
        scenario: "api *wrong key|api no key",
        at: "0 POST /api*: .body",
        targets: BOTH,
        reason: "HTTP 401 body: natsgate writes `Unauthorized`, Centrifugo an empty body; the status is the same",
    },
    Allowed {
        scenario: "api unknown method",
        at: "0 POST /api/frobnicate: *",
        targets: BOTH,
        reason: "an unknown API method: natsgate answers HTTP 200 with error 104; Centrifugo has no such route (HTTP 404)",
    },
    Allowed {
        scenario: "api refresh user",
        at: "6 recv u: .msg.push.refresh.ttl",
        targets: BOTH,
        reason: "API refresh with a far expire_at: Centrifugo caps the ttl it pushes at one year (centrifuge maxTTLSeconds); natsgate does not",
    },
    Allowed {
        scenario: "api info|api presence of subscriber",
        at: "* POST /api/info: .body*|* POST /api/channels: .body*",
        targets: BOTH,
        reason: "info: natsgate lists each gateway (two on NATS) without Centrifugo's `metrics`; counts include clients of scenarios running at the same time",
    },
    Allowed {
        scenario: "api broadcast|api broadcast idempotency",
        at: "* POST /api/broadcast: *.offset|* POST /api/history: *.offset",
        targets: NATS,
        reason: "offsets on NATS are JetStream sequences shared by a namespace: two channels of one namespace never \
                 both have offset 1 (order is compared, values are not)",
    },
    Allowed {
        scenario: "bad json 5 * connect",
        at: "* recv a: *",
        targets: BOTH,
        reason: "an empty text frame: natsgate ignores it (it is lenient with blank lines, see src/protocol/json.rs); Centrifugo closes with 3501",
    },
    Allowed {
        scenario: "oversized frame *",
        at: "* recv a: .close.reason",
        targets: BOTH,
        reason: "a frame over websocket_message_size_limit: both close with 1009; natsgate gives the reason `message too big`, Centrifugo none",
    },
    Allowed {
        scenario: "binary frame on json after connect",
        at: "4 recv a: *",
        targets: BOTH,
        reason: "a binary frame on a JSON connection: natsgate closes with 3501; Centrifugo decodes it as JSON. No SDK sends one",
    },
    Allowed {
        scenario: "tags recovery with delta *",
        at: "14 recv a: .msg.subscribe.publications",
        targets: BOTH,
        reason: "a subscriber with both delta and a tags filter (the SDKs refuse the pair): natsgate recovers every \
                 missed publication, as its live ones are not filtered either; Centrifugo filters the recovered ones, \
                 after which its next live delta is made against a publication the client may not have",
    },
    // The map server API (cases_map_api.rs).
    Allowed {
        scenario: "map *",
        at: "*.epoch",
        targets: BOTH,
        reason: "an epoch belongs to a namespace in natsgate (one per channel in Centrifugo's memory engine), and \
                 ephemeral maps, which keep no stream, answer no epoch",
    },
    Allowed {
        scenario: "map *",
        at: "*.offset",
        targets: NATS,
        reason: "offsets on NATS are JetStream sequences shared by a namespace (order is compared, values are not)",
    },
    Allowed {
        scenario: "map clear",
        at: "4 POST /api/map_read_state: *|5 POST /api/map_publish: *|6 POST /api/map_read_stream: *",
        targets: BOTH,
        reason: "map_clear keeps the channel's offset counter (its stream is removed as history_remove removes it); \
                 Centrifugo's memory broker starts the channel again at offset 1 in a new epoch",
    },
    // Map client protocol (cases_map_client.rs), README Deviations "Map subscriptions".
    Allowed {
        scenario: "map state pages *|map page limits *|map stream catch-up *",
        at: "* recv *: .msg.subscribe.cursor",
        targets: BOTH,
        reason: "the state cursor is `offset:epoch:key` (the frozen position rides in it, so pages need no \
                 server-side memory and any gateway serves the next page); Centrifugo's is the key. SDKs send it \
                 back unread",
    },
    // Map delta compression (cases_map_delta.rs).
    Allowed {
        scenario: "map delta pages *|map delta catch-up *",
        at: "* recv *: .msg.subscribe.cursor",
        targets: BOTH,
        reason: "the state cursor is `offset:epoch:key` (see the map client entry above)",
    },
    // Map catch-up timeout (cases_map_catch_up.rs).
    Allowed {
        scenario: "map catch-up *",
        at: "* recv *: .msg.subscribe.cursor",
        targets: BOTH,
        reason: "the state cursor is `offset:epoch:key`; Centrifugo's is the key (as for the map state pages)",
    },
    // Shared poll (cases_shared_poll.rs), README Deviations "Shared poll".
    Allowed {
        scenario: "shared poll versionless *",
        at: "24 recv b: .msg.push.pub.version",
        targets: NATS,
        reason: "versionless versions are numbered per gateway (per node in Centrifugo): a tracker on another \
                 gateway starts at that gateway's count",
    },
    // Presence maps (cases_map_presence.rs), README Deviations "Presence maps".
    Allowed {
        scenario: "map presence client key *",
        at: "15 recv w: *",
        targets: BOTH,
        reason: "`map.remove_client_on_unsubscribe`: the unsubscribing client does not itself get its key's removal \
                 (natsgate removes the key once the client left; Centrifugo pushes the removal to it just before \
                 the unsubscribe reply). Other subscribers get it as in Centrifugo; SDKs drop pushes of a channel \
                 they left",
    },
];
