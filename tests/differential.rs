//! Differential tests: the same scenarios (client frames over WebSocket in
//! JSON and Protobuf, and HTTP API calls) played against the real
//! Centrifugo v6.9.1 (memory engine) and against natsgate, embedded and as
//! two gateways on NATS; transcripts must match after normalisation, except
//! for the differences listed in `differential/allow.rs` (the README's
//! "Deviations").
//!
//! Needs the Centrifugo binary: `CENTRIFUGO_BIN`, or
//! `$(go env GOPATH)/bin/centrifugo` (`bash .ci/run` installs it). Without
//! it the tests fail when `CI=true` and are skipped (with a message) else.
//! With `DIFF_DUMP` set, every group prints Centrifugo's normalised
//! transcripts (`DUMP [scenario] step => entry`), to write new scenarios.

use natsgate_test_support as common;

// Part of the scenario vocabulary (targets, steps) is there for scenarios
// that later transports and proxies add.
#[allow(dead_code)]
#[path = "differential/allow.rs"]
mod allow;
#[path = "differential/compare.rs"]
mod compare;
#[path = "differential/group.rs"]
mod group;
#[path = "differential/normalize.rs"]
mod normalize;
#[allow(dead_code)]
#[path = "differential/runner.rs"]
mod runner;
#[allow(dead_code)]
#[path = "differential/scenario.rs"]
mod scenario;

#[path = "differential/cases_api.rs"]
mod cases_api;
#[path = "differential/cases_chanfeat.rs"]
mod cases_chanfeat;
#[path = "differential/cases_channels.rs"]
mod cases_channels;
#[path = "differential/cases_connect.rs"]
mod cases_connect;
#[path = "differential/cases_delta.rs"]
mod cases_delta;
#[path = "differential/cases_history.rs"]
mod cases_history;
#[path = "differential/cases_input.rs"]
mod cases_input;
#[path = "differential/cases_map_api.rs"]
mod cases_map_api;
#[path = "differential/cases_map_catch_up.rs"]
mod cases_map_catch_up;
#[path = "differential/cases_map_client.rs"]
mod cases_map_client;
#[path = "differential/cases_map_delta.rs"]
mod cases_map_delta;
#[path = "differential/cases_map_presence.rs"]
mod cases_map_presence;
#[path = "differential/cases_shared_poll.rs"]
mod cases_shared_poll;

use common::{hs256_token, SECRET};
use serde_json::Value;

/// API key of every group.
pub const API_KEY: &str = "differential-api-key";

/// A connection token for `user`, valid for an hour.
pub fn token(user: &str) -> String {
    hs256_token(SECRET, user, Some(3600), Value::Null)
}
