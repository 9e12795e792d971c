//! A group of scenarios sharing one configuration: starts Centrifugo, one
//! gateway on the embedded broker and two gateways on a nats-server once,
//! plays every scenario on the three (at the same time), compares
//! natsgate's transcripts with Centrifugo's and fails on any difference the
//! allow-list does not cover, printing the transcripts side by side.

use super::allow::ALLOWED;
use super::compare::compare;
use super::normalize::{align_offsets, normalize, order_own_publications};
use super::runner::{play, Kind, Target};
use super::scenario::{label, Scenario};
use crate::common::centrifugo::{centrifugo_or_skip, Centrifugo, ServerConfig};
use crate::common::pair::{Backend, Pair};
use crate::common::Gateway;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Mutex;

/// Every group. When all of them have run in one test process, an
/// allow-list entry that covered no difference is stale and fails the
/// last group: a fixed difference must leave the list (and the README).
const GROUPS: [&str; 18] = [
    "api",
    "channels",
    "connect",
    "aud_iss",
    "anonymous",
    "history",
    "bad_input",
    "ping_pong",
    // Issue #20's channel features (cases_chanfeat.rs).
    "personal",
    "cache_recovery",
    // Delta compression and tags filter (cases_delta.rs).
    "delta",
    "tags_filter",
    // The map server API (cases_map_api.rs).
    "map_api",
    // The map client protocol (cases_map_client.rs).
    "map_client",
    // Delta compression of map subscriptions (cases_map_delta.rs).
    "map_delta",
    // The map catch-up timeout (cases_map_catch_up.rs).
    "map_catch_up",
    // Shared poll subscriptions (cases_shared_poll.rs).
    "shared_poll",
    // Presence maps: map_clients, map_users (cases_map_presence.rs).
    "map_presence",
];

/// The groups that passed so far and the allow-list entries (indexes into
/// `ALLOWED`) they used.
static SEEN: Mutex<(Vec<String>, Vec<usize>)> = Mutex::new((Vec::new(), Vec::new()));

/// Scenarios played at once.
const PARALLEL: usize = 8;

/// Options every group gets unless it sets them: pings rare enough not to
/// land inside a scenario (natsgate's first ping comes after half the
/// interval, Centrifugo's after the whole).
fn defaults() -> Value {
    json!({"ping_interval": "60s", "pong_timeout": "8s", "api_key": super::API_KEY})
}

/// Plays `scenarios` with `config` on all servers; panics listing every
/// unallowed difference.
pub async fn run_group(group: &str, config: Value, scenarios: Vec<Scenario>) {
    let Some(bin) = centrifugo_or_skip(group) else { return };
    let mut options = defaults();
    options.as_object_mut().expect("object").extend(config.as_object().expect("config is an object").clone());
    let config = ServerConfig(options);

    let centrifugo = Centrifugo::start(&bin, &config.centrifugo_json());
    let builder = |name: &str| config.apply_to(Gateway::builder().env("NATSGATE_NAME", name));
    let embedded = Pair::start(Backend::Embedded, builder);
    let nats = Pair::start(Backend::Nats, builder);
    let targets = [
        Target { kind: Kind::Centrifugo, http: [centrifugo.http_url(), centrifugo.http_url()] },
        Target { kind: Kind::Embedded, http: [embedded.a.http_url(), embedded.b().http_url()] },
        Target { kind: Kind::Nats, http: [nats.a.http_url(), nats.b().http_url()] },
    ];

    let mut names = HashSet::new();
    let mut failures = Vec::new();
    let mut allowed_seen = 0;
    let mut used = HashSet::new();
    for scenario in &scenarios {
        assert!(names.insert(scenario.name.clone()), "two scenarios named {}", scenario.name);
    }
    // Scenarios of a group touch different channels and users, so several
    // run at once; each is played on the three servers at the same time.
    let transcripts: Vec<_> = futures_util::stream::iter(&scenarios)
        .map(|s| async { tokio::join!(play(&targets[0], s), play(&targets[1], s), play(&targets[2], s)) })
        .buffered(PARALLEL)
        .collect()
        .await;
    for (scenario, (mut c, mut e, mut n)) in scenarios.iter().zip(transcripts) {
        for t in [&mut c, &mut e, &mut n] {
            order_own_publications(&scenario.steps, t);
        }
        let c = normalize(&c);
        if std::env::var_os("DIFF_DUMP").is_some() {
            for (i, step) in scenario.steps.iter().enumerate() {
                println!("DUMP [{}] {} => {}", scenario.name, label(i, step), c[i]);
            }
        }
        for (kind, mut natsgate) in [(Kind::Embedded, normalize(&e)), (Kind::Nats, normalize(&n))] {
            align_offsets(kind, &c, &mut natsgate);
            let diffs = compare(scenario, kind, &c, &natsgate);
            let unallowed: Vec<_> = diffs.iter().filter(|(_, a)| a.is_none()).collect();
            allowed_seen += diffs.len() - unallowed.len();
            for (d, a) in &diffs {
                if let Some(a) = a {
                    used.insert(ALLOWED.iter().position(|x| std::ptr::eq(x, *a)).expect("entry of ALLOWED"));
                    println!(
                        "allowed [{}] {kind:?} {}: {} (centrifugo {}, natsgate {})",
                        scenario.name, d.at, a.reason, d.centrifugo, d.natsgate
                    );
                }
            }
            if !unallowed.is_empty() {
                let mut report = format!("scenario `{}` on natsgate {kind:?}:\n", scenario.name);
                for (d, _) in &unallowed {
                    report.push_str(&format!(
                        "  at {}\n    centrifugo: {}\n    natsgate:   {}\n",
                        d.at, d.centrifugo, d.natsgate
                    ));
                }
                report.push_str("  transcripts (centrifugo | natsgate):\n");
                for (i, step) in scenario.steps.iter().enumerate() {
                    if c[i].is_null() && natsgate[i].is_null() {
                        continue;
                    }
                    report.push_str(&format!("    {}\n      C {}\n      N {}\n", label(i, step), c[i], natsgate[i]));
                }
                failures.push(report);
            }
        }
    }
    println!("group {group}: {} scenarios, {allowed_seen} allowed differences", scenarios.len());
    if !failures.is_empty() {
        panic!(
            "group {group}: {} of {} scenario runs differ from Centrifugo beyond the allow-list \
             (tests/differential/allow.rs, README Deviations):\n\n{}",
            failures.len(),
            scenarios.len() * 2,
            failures.join("\n")
        );
    }
    drop(centrifugo);
    check_stale(group, used);
}

/// Records `group`'s used entries; once every group has passed, panics
/// naming the entries no group used.
fn check_stale(group: &str, used: HashSet<usize>) {
    assert!(GROUPS.contains(&group), "group {group} missing from GROUPS");
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    seen.0.push(group.to_string());
    seen.1.extend(used);
    if !GROUPS.iter().all(|g| seen.0.iter().any(|s| s == g)) {
        return;
    }
    let stale: Vec<String> = ALLOWED
        .iter()
        .enumerate()
        .filter(|(i, _)| !seen.1.contains(i))
        .map(|(_, a)| format!("  [{}] at {}: {}", a.scenario, a.at, a.reason))
        .collect();
    assert!(
        stale.is_empty(),
        "allow-list entries that no scenario needs any more (remove them here and from the README's Deviations):\n{}",
        stale.join("\n")
    );
}
