//! Real JavaScript clients of the server side: cent.js (a Centrifugo HTTP
//! API client from npm) and nats.js (publishing straight to a channel's
//! NATS subject), with centrifuge-js listening. Runs `node --test` on
//! `tests/js/scenarios/api.mjs` against two gateways sharing one
//! nats-server.
//!
//! Needs node and `npm ci --prefix tests/js` (done by `.ci/run`).

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};
use common::{Gateway, NatsServer, SECRET};
use natsgate::broker::subject::SubjectMap;

const API_KEY: &str = "sdk-js-api-key";
/// The channel nats.js publishes to (its subject escapes `.` and `_`).
const NATS_CHANNEL: &str = "direct.nats_js";

#[test]
fn cent_js_and_nats_js_against_two_gateways() {
    let dir = js_dir();
    for package in ["centrifuge", "cent.js", "nats", "ws"] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "tests/js/node_modules/{package} is missing: run `npm ci --prefix tests/js` first (bash .ci/run does)"
        );
    }
    let nats = NatsServer::start();
    let gateway = |name: &str| {
        Gateway::builder().permissive().nats(&nats).env("NATSGATE_NAME", name).env("NATSGATE_API_KEY", API_KEY).start()
    };
    let (a, b) = (gateway("gw-a"), gateway("gw-b"));
    let ws_urls = [a.ws_url(), b.ws_url()].join(",");
    let api_urls = [format!("{}/api", a.http_url()), format!("{}/api", b.http_url())].join(",");
    let subject = SubjectMap::new("natsgate").channel_subject(NATS_CHANNEL);

    let env = [
        ("GATEWAY_URLS", ws_urls.clone()),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("API_URLS", api_urls.clone()),
        ("API_KEY", API_KEY.to_string()),
        ("NATS_URL", nats.url()),
        ("NATS_CHANNEL", NATS_CHANNEL.to_string()),
        ("NATS_SUBJECT", subject.clone()),
    ];
    run_node_tests(&["scenarios/api.mjs"], &env, "cent.js / nats.js scenarios");
}
