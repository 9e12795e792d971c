//! The admin web interface (`NATSGATE_ADMIN`): in headless Chromium
//! (Debian's `chromium`, driven by playwright-core from `tests/js`) against
//! two gateways on one nats-server, with a centrifuge-python client
//! (`tests/admin/listen.py`, from `target/grpc-venv`) receiving what the
//! actions page publishes; and, over plain HTTP, the refusals: no admin
//! endpoint answers without a token, failed logins are limited, startup
//! names a missing password or secret, the password is never logged.
//!
//! Screenshots land in `target/admin-screenshots/`.

use natsgate_test_support as common;

use common::node::{js_dir, run_node_tests};
use common::{free_port, repo_root, Gateway, NatsServer, SECRET};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "correct-horse-battery-staple-42";
const ADMIN_SECRET: &str = "admin-token-signing-secret";
const API_KEY: &str = "admin-test-api-key";
const NAMESPACES: &str = r#"[{"name":"chat","allow_subscribe_for_client":true,"presence":true,"join_leave":true,
    "force_push_join_leave":true,"history_size":50,"history_ttl":"300s"}]"#;

/// A missing tool fails under CI and skips (loudly) elsewhere.
fn missing(what: &str) -> Option<()> {
    let hint = "run `bash .ci/run`, which installs it";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} is missing under CI=true: {hint}");
    eprintln!("SKIPPED: {what} is missing ({hint})");
    None
}

fn admin_gateway(nats: &NatsServer, name: &str) -> Gateway {
    Gateway::builder()
        .permissive()
        .nats(nats)
        .envs(&[
            ("NATSGATE_NAME", name),
            ("NATSGATE_API_KEY", API_KEY),
            ("NATSGATE_NAMESPACES", NAMESPACES),
            ("NATSGATE_ADMIN", "true"),
            ("NATSGATE_ADMIN_PASSWORD", PASSWORD),
            ("NATSGATE_ADMIN_SECRET", ADMIN_SECRET),
            // The channel view connects from the admin page's origin, which
            // (as every origin) must be allowed.
            ("NATSGATE_ALLOWED_ORIGINS", "http://127.0.0.1:*"),
        ])
        .start()
}

fn assert_password_not_logged(gateways: &[&Gateway]) {
    for gateway in gateways {
        let log = gateway.log();
        assert!(!log.is_empty(), "the gateway logged something");
        assert!(!log.contains(PASSWORD), "the admin password appears in the log:\n{log}");
        assert!(!log.contains(ADMIN_SECRET), "the admin secret appears in the log:\n{log}");
    }
}

#[test]
fn admin_pages_in_headless_chromium_against_two_gateways() {
    let chromium = PathBuf::from("/usr/bin/chromium");
    let python = repo_root().join("target/grpc-venv/bin/python");
    if !chromium.is_file() {
        return missing("/usr/bin/chromium (Debian's chromium package)").unwrap_or(());
    }
    let python_ok = Command::new(&python)
        .args(["-c", "import centrifuge"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !python_ok {
        return missing("target/grpc-venv with centrifuge-python").unwrap_or(());
    }
    assert!(
        js_dir().join("node_modules/playwright-core").is_dir(),
        "tests/js/node_modules/playwright-core is missing: run `npm ci --prefix tests/js` (bash .ci/run does)"
    );
    let nats = NatsServer::start();
    let (a, b) = (admin_gateway(&nats, "gw-a"), admin_gateway(&nats, "gw-b"));
    let screenshots = repo_root().join("target/admin-screenshots");
    let env = [
        ("GATEWAY_URLS", [a.ws_url(), b.ws_url()].join(",")),
        ("TOKEN_SECRET", SECRET.to_string()),
        ("ADMIN_URLS", [format!("{}/", a.http_url()), format!("{}/", b.http_url())].join(",")),
        ("API_URLS", [format!("{}/api", a.http_url()), format!("{}/api", b.http_url())].join(",")),
        ("API_KEY", API_KEY.to_string()),
        ("ADMIN_PASSWORD", PASSWORD.to_string()),
        ("PYTHON", python.display().to_string()),
        ("PY_LISTENER", repo_root().join("tests/admin/listen.py").display().to_string()),
        ("SCREENSHOT_DIR", screenshots.display().to_string()),
    ];
    run_node_tests(&["scenarios/admin_browser.mjs"], &env, "admin web interface in Chromium");
    for shot in ["login-refused", "cluster", "actions", "channel"] {
        let path = screenshots.join(format!("{shot}.png"));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "screenshot {} was saved", path.display());
    }
    println!("screenshots in {}", screenshots.display());
    assert_password_not_logged(&[&a, &b]);
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.expect("request").status().as_u16()
}

#[tokio::test]
async fn admin_endpoints_refuse_without_a_token_and_limit_failed_logins() {
    let nats = NatsServer::start();
    let gateway = admin_gateway(&nats, "gw-solo");
    let base = gateway.http_url();
    let http = reqwest::Client::new();
    let protected: [(&str, &str); 7] = [
        ("POST", "/admin/api"),
        ("POST", "/admin/api/info"),
        ("POST", "/admin/api/publish"),
        ("POST", "/admin/renew"),
        ("GET", "/admin/cluster"),
        ("GET", "/admin/settings"),
        ("POST", "/admin/channel_token"),
    ];
    let call = |method: &str, path: &str, token: Option<&str>| {
        let url = format!("{base}{path}");
        let request = if method == "GET" { http.get(url) } else { http.post(url).body("{}") };
        match token {
            Some(t) => request.header("authorization", t),
            None => request,
        }
    };
    // Another secret's token, a client token, garbage, the wrong scheme.
    let foreign = natsgate::auth::mint_hs256(
        "not-the-admin-secret",
        &serde_json::json!({"sub":"admin","aud":"natsgate-admin","exp": common::now_secs() + 600}),
    );
    let client = common::hs256_token(ADMIN_SECRET, "admin", Some(600), serde_json::json!({}));
    let bad = [None, Some(format!("token {foreign}")), Some(format!("token {client}")), Some("token x.y.z".into())];
    for (method, path) in protected {
        for token in &bad {
            assert_eq!(status(call(method, path, token.as_deref())).await, 401, "{method} {path} with {token:?}");
        }
    }

    // The app itself holds no data and is served without a token.
    assert_eq!(status(http.get(format!("{base}/"))).await, 200);
    assert_eq!(status(http.get(format!("{base}/assets/vendor/uplot/uPlot.esm.js"))).await, 200);

    // Login: a wrong password is 400 (as Centrifugo), the right one a token.
    let login = |password: &str| http.post(format!("{base}/admin/auth")).form(&[("password", password)]);
    assert_eq!(status(login("wrong")).await, 400);
    let reply: Value = login(PASSWORD).send().await.unwrap().json().await.unwrap();
    let token = format!("token {}", reply["token"].as_str().expect("a token"));
    for (method, path) in protected {
        let code = status(call(method, path, Some(&token))).await;
        assert_ne!(code, 401, "{method} {path} with a valid token");
    }
    let info: Value = call("POST", "/admin/api/info", Some(&token)).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["result"]["nodes"][0]["name"], "gw-solo", "{info}");
    let legacy: Value = call("POST", "/admin/api", Some(&token))
        .body(r#"{"method":"info","params":{}}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["result"]["nodes"][0]["name"], "gw-solo", "{legacy}");
    let cluster: Value = call("GET", "/admin/cluster", Some(&token)).send().await.unwrap().json().await.unwrap();
    let node = &cluster["nodes"][0];
    assert_eq!(node["nats_connected"], true, "{cluster}");
    assert!(node["rss_bytes"].as_u64().unwrap() > 0, "{cluster}");

    // Failed logins beyond the burst are refused, even with the right
    // password, until the bucket refills.
    let mut limited = false;
    for _ in 0..12 {
        if status(login("still wrong")).await == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "failed logins are limited");
    assert_eq!(status(login(PASSWORD)).await, 429, "no password is checked while limited");
    assert_password_not_logged(&[&gateway]);
}

#[test]
fn startup_names_a_missing_admin_password_or_secret() {
    let start = |vars: &[(&str, &str)]| {
        Gateway::builder().permissive().envs(vars).ready_timeout(Duration::from_secs(5)).try_start()
    };
    let Err(log) = start(&[("NATSGATE_ADMIN", "true"), ("NATSGATE_ADMIN_SECRET", ADMIN_SECRET)]) else {
        panic!("started without an admin password")
    };
    assert!(log.contains("NATSGATE_ADMIN_PASSWORD"), "{log}");
    let Err(log) = start(&[("NATSGATE_ADMIN", "true"), ("NATSGATE_ADMIN_PASSWORD", PASSWORD)]) else {
        panic!("started without an admin secret")
    };
    assert!(log.contains("NATSGATE_ADMIN_SECRET"), "{log}");
    // The harness prepends the environment it set; the gateway's own output follows.
    let output = log.split("----- natsgate log").nth(1).unwrap_or_default();
    assert!(!output.contains(PASSWORD), "the password appears in the error:\n{output}");

    // Insecure: starts, warns, and the endpoints need no token.
    let gateway = start(&[("NATSGATE_ADMIN", "true"), ("NATSGATE_ADMIN_INSECURE", "true")]).expect("insecure starts");
    assert!(gateway.log().contains("NATSGATE_ADMIN_INSECURE is on"), "{}", gateway.log());
    let (code, body) = gateway.http_get("/admin/settings").unwrap();
    assert_eq!(code, 200, "{body}");

    // Off by default: nothing at / nor /admin/*.
    let plain = start(&[]).expect("starts");
    assert_eq!(plain.http_get("/").unwrap().0, 404);
    assert_eq!(plain.http_get("/admin/settings").unwrap().0, 404);
}

#[test]
fn admin_on_the_internal_port_and_under_a_prefix() {
    let internal = free_port();
    let gateway = Gateway::builder()
        .permissive()
        .envs(&[
            ("NATSGATE_INTERNAL_PORT", &internal.to_string()),
            ("NATSGATE_ADMIN", "true"),
            ("NATSGATE_ADMIN_PASSWORD", PASSWORD),
            ("NATSGATE_ADMIN_SECRET", ADMIN_SECRET),
            ("NATSGATE_ADMIN_HANDLER_PREFIX", "/ops/"),
        ])
        .start();
    // Like Centrifugo: the internal port unless NATSGATE_ADMIN_EXTERNAL.
    assert_eq!(gateway.http_get("/ops/").unwrap().0, 404, "not on the client port");
    let (code, page) = common::gateway::http_get(internal, "/ops/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains(r#"<base href="/ops/">"#), "{page}");
    assert_eq!(common::gateway::http_get(internal, "/ops/admin/cluster").unwrap().0, 401);
    assert_eq!(common::gateway::http_get(internal, "/").unwrap().0, 404, "nothing outside the prefix");
    assert_eq!(common::gateway::http_get(internal, "/ready").unwrap().0, 200, "the probes still answer");
}
