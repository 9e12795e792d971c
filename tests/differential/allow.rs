//! The allow-list: every known difference between natsgate and Centrifugo
//! v6.9.1, with its reason. It mirrors the README's "Deviations" section;
//! a difference not covered here fails the differential tests. Entries
//! tagged `FAULT-<n>` are natsgate faults being fixed elsewhere: remove the
//! entry when the fix lands.

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
        self.targets.contains(&kind) && glob(self.scenario, scenario) && self.at.split('|').any(|p| glob(p, at))
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
        scenario: "token expire*",
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
        scenario: "recovery empty epoch *",
        at: "11 recv a: .msg.subscribe.*",
        targets: BOTH,
        reason: "FAULT-7: recovery with an empty epoch is refused; Centrifugo treats it as any epoch",
    },
    Allowed {
        scenario: "recovery flag reject unrecovered *",
        at: "9 recv a: .msg.*",
        targets: BOTH,
        reason: "FAULT-7: subscribe `flag` bit 2 (reject unrecovered -> error 112) is ignored",
    },
    Allowed {
        scenario: "recovery fresh channel *",
        at: "10 recv a: .msg.subscribe.*",
        targets: NATS,
        reason: "FAULT-1: recovery from offset 0 on a fresh history channel on NATS loses publications",
    },
    Allowed {
        scenario: "positioning *",
        at: "7 recv a: .msg.subscribe.*",
        targets: BOTH,
        reason: "positioned/recoverable asked on a namespace without history: Centrifugo answers positioned and \
                 recoverable with its memory engine's epoch; natsgate has no stream there and ignores the flags \
                 (it also refuses allow_recovery/allow_positioning without history_size/history_ttl at startup)",
    },
];
