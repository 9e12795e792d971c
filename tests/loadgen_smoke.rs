//! Smoke test of the load generator (`natsgate_test_support::loadgen`): a few clients and a
//! few messages against a real nats-server, with natsgate in front of it,
//! against nats-server's own WebSocket listener, against the real
//! Centrifugo (memory engine and NATS broker) and the floor, asserting that
//! every delivery arrives. The generator lives in the test-support crate
//! (`tests/support`), built once; the natsgate binary is the one cargo built for it.

use natsgate_test_support::loadgen;

use clap::Parser;
use loadgen::options::{Options, System};
use loadgen::report::Report;

fn options(args: &[&str]) -> Options {
    let base = [
        "loadgen",
        "--natsgate-bin",
        env!("CARGO_BIN_EXE_natsgate"),
        "--timeout",
        "30",
        "--settle-ms",
        "50",
        "--quiet",
    ];
    Options::try_parse_from(base.iter().chain(args)).expect("valid loadgen arguments")
}

fn assert_no_loss(report: &Report) {
    let table = loadgen::report::table(std::slice::from_ref(report));
    assert!(report.expected > 0, "nothing expected?\n{table}");
    assert_eq!(report.connect_failures, 0, "\n{table}");
    assert_eq!(report.lost, 0, "\n{table}");
    assert_eq!(report.received, report.expected, "\n{table}");
    assert_eq!(report.out_of_order + report.unexpected, 0, "\n{table}");
    assert_eq!(report.error_count, 0, "\n{table}");
    assert!(report.latency_ms.is_some(), "\n{table}");
    if report.system != System::Floor {
        assert!(report.server.idle_kib > 0, "server RSS was not read\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_clients_on_natsgate_and_nats_websocket_lose_nothing() {
    let opts = options(&["--target", "both", "--clients", "12", "--channels", "3", "--messages", "60"]);
    let reports = loadgen::run(&opts).await.expect("load generator run");
    assert_eq!(reports.iter().map(|r| r.system).collect::<Vec<_>>(), [System::Natsgate, System::NatsWs]);
    for report in &reports {
        assert_no_loss(report);
        // 60 messages over 3 channels of 4 subscribers each.
        assert_eq!(report.expected, 240);
    }
    assert!(reports[0].nats.is_some(), "natsgate's nats-server RSS is reported separately");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_clients_at_a_fixed_rate_lose_nothing() {
    let opts =
        options(&["--protocol", "protobuf", "--clients", "6", "--channels", "2", "--messages", "40", "--rate", "200"]);
    let reports = loadgen::run(&opts).await.expect("load generator run");
    assert_no_loss(&reports[0]);
    // 40 messages at 200/s take about 0.2 s to publish.
    assert!(reports[0].publish_secs >= 0.15, "rate not applied: {}s", reports[0].publish_secs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_through_the_http_api_loses_nothing() {
    // One request at a time, so publications also arrive in order.
    let opts = options(&[
        "--publish-via",
        "http",
        "--http-concurrency",
        "1",
        "--clients",
        "6",
        "--channels",
        "2",
        "--messages",
        "30",
    ]);
    let reports = loadgen::run(&opts).await.expect("load generator run");
    assert_no_loss(&reports[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifugo_its_nats_broker_and_the_floor_lose_nothing() {
    let Some(bin) = natsgate_test_support::centrifugo::centrifugo_or_skip("loadgen centrifugo target") else {
        return;
    };
    let bin = bin.to_string_lossy().into_owned();
    let opts = options(&[
        "--target",
        "centrifugo,centrifugo-nats,floor",
        "--centrifugo-bin",
        &bin,
        "--http-concurrency",
        "1",
        "--clients",
        "6",
        "--channels",
        "2",
        "--messages",
        "30",
    ]);
    let reports = loadgen::run(&opts).await.expect("load generator run");
    assert_eq!(
        reports.iter().map(|r| r.system).collect::<Vec<_>>(),
        [System::Centrifugo, System::CentrifugoNats, System::Floor]
    );
    for report in &reports {
        assert_no_loss(report);
        assert_eq!(report.expected, 90);
        // Every target's server CPU is read (the floor's per thread).
        assert!(report.publish_cpu.server_secs.is_some(), "{:?}: no server CPU", report.system);
    }
    assert!(reports[1].nats.is_some(), "Centrifugo's nats-server RSS is reported separately");
}

#[test]
fn refuses_targets_off_loopback() {
    let opts =
        options(&["--ws-url", "ws://192.0.2.1:8000/connection/websocket", "--nats-url", "nats://127.0.0.1:4222"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = runtime.block_on(loadgen::run(&opts)).expect_err("a non-loopback target must be refused");
    assert!(err.to_string().contains("not on loopback"), "{err}");
}
