//! A group of scenarios sharing one configuration: starts Centrifugo, one
//! gateway on the embedded broker and two gateways on a nats-server once,
//! plays every scenario on the three (at the same time), compares
//! natsgate's transcripts with Centrifugo's and fails on any difference the
//! allow-list does not cover, printing the transcripts side by side.

use super::compare::compare;
use super::normalize::normalize;
use super::runner::{play, Kind, Target};
use super::scenario::{label, Scenario};
use crate::common::centrifugo::{centrifugo_or_skip, Centrifugo, ServerConfig};
use crate::common::pair::{Backend, Pair};
use crate::common::Gateway;
use serde_json::{json, Value};
use std::collections::HashSet;

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
    for scenario in &scenarios {
        assert!(names.insert(scenario.name.clone()), "two scenarios named {}", scenario.name);
        let (c, e, n) =
            tokio::join!(play(&targets[0], scenario), play(&targets[1], scenario), play(&targets[2], scenario));
        let c = normalize(Kind::Centrifugo, &c);
        for (kind, natsgate) in
            [(Kind::Embedded, normalize(Kind::Embedded, &e)), (Kind::Nats, normalize(Kind::Nats, &n))]
        {
            let diffs = compare(scenario, kind, &c, &natsgate);
            let unallowed: Vec<_> = diffs.iter().filter(|(_, a)| a.is_none()).collect();
            allowed_seen += diffs.len() - unallowed.len();
            for (d, a) in &diffs {
                if let Some(a) = a {
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
}
