//! The `natsgate` helper commands run as a real binary in a temporary
//! directory: exit codes, messages, and that secrets stay out of stderr;
//! the first run (development token), `.env`, and what git ignores.

use natsgate_test_support as common;

use common::{hs256_token, Gateway, NatsServer, Protocol, WsClient, SECRET, TIMEOUT};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

use natsgate::auth::TokenVerifier;
use natsgate::config::Config;

/// Runs `natsgate args...` in `dir` with only the given `NATSGATE_*` variables.
fn natsgate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natsgate"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("NATSGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir).args(args).envs(env.iter().copied());
    cmd.output().expect("run natsgate")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit code, showing the output if it differs.
#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(out), stderr(out));
}

/// A temp dir holding a freshly generated `config.json`, and its secret.
fn generated() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = natsgate(dir.path(), &["genconfig"], &[]);
    assert_exit(&out, 0);
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let secret = json["token_hmac_secret_key"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32, "{secret}");
    (dir, secret)
}

#[test]
fn genconfig_then_checkconfig() {
    let (dir, secret) = generated();
    let out = natsgate(dir.path(), &["checkconfig", "--config", "config.json"], &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("configuration is valid"), "{}", stdout(&out));
    assert!(!stderr(&out).contains(&secret));
    // The global option works before the subcommand, and so does the variable.
    assert_exit(&natsgate(dir.path(), &["--config", "config.json", "checkconfig"], &[]), 0);
    assert_exit(&natsgate(dir.path(), &["checkconfig"], &[("NATSGATE_CONFIG", "config.json")]), 0);

    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(json["api_key"].as_str().is_some_and(|k| k.len() >= 32 && k != secret), "{text}");
    assert_eq!(json["allow_subscribe_for_client"], false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("config.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Every run makes new secrets.
    assert_exit(&natsgate(dir.path(), &["genconfig", "-o", "other.json"], &[]), 0);
    assert!(!std::fs::read_to_string(dir.path().join("other.json")).unwrap().contains(&secret));
}

#[test]
fn genconfig_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let out = natsgate(dir.path(), &["genconfig"], &[]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join("config.json")).unwrap(), "{}");
}

#[test]
fn gentoken_is_accepted_by_checktoken_and_the_verifier() {
    let (dir, secret) = generated();
    let args = ["--config", "config.json", "gentoken", "-u", "alice", "--info", r#"{"name":"Alice"}"#];
    let out = natsgate(dir.path(), &args, &[]);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(&secret));
    let token = stdout(&out).trim().to_string();

    let out = natsgate(dir.path(), &["--config", "config.json", "checktoken", &token], &[]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("user: alice"), "{text}");
    assert!(text.contains("\"info\""), "{text}");
    assert!(text.contains("expires: "), "{text}");

    let config = Config::from_iter([("NATSGATE_TOKEN_HMAC_SECRET_KEY".to_string(), secret)]).unwrap();
    let credentials = TokenVerifier::from_config(&config).unwrap().verify_connect(&token).unwrap();
    assert_eq!(credentials.user, "alice");
    let expires = credentials.expire_at.expect("default TTL sets exp");
    let week = natsgate_now() + 7 * 24 * 3600;
    assert!((week - 5..=week + 5).contains(&expires), "{expires} vs {week}");
    assert_eq!(&credentials.info[..], br#"{"name":"Alice"}"#);

    // TTL 0: no expiry.
    let out = natsgate(dir.path(), &["-c", "config.json", "gentoken", "-u", "bob", "-t", "0"], &[]);
    assert_exit(&out, 0);
    let token = stdout(&out).trim().to_string();
    let out = natsgate(dir.path(), &["-c", "config.json", "checktoken", &token], &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("expires: never"), "{}", stdout(&out));
}

#[test]
fn gensubtoken_makes_a_subscription_token() {
    let (dir, secret) = generated();
    let out =
        natsgate(dir.path(), &["-c", "config.json", "gensubtoken", "-u", "alice", "-s", "chat:room", "-t", "60"], &[]);
    assert_exit(&out, 0);
    let config = Config::from_iter([("NATSGATE_TOKEN_HMAC_SECRET_KEY".to_string(), secret)]).unwrap();
    let claims = TokenVerifier::from_config(&config).unwrap().verify_subscription(stdout(&out).trim()).unwrap();
    assert_eq!((claims.user.as_str(), claims.channel.as_str()), ("alice", "chat:room"));
    assert!(claims.expire_at.is_some_and(|at| at <= natsgate_now() + 61));
}

#[test]
fn checktoken_rejects_tampered_and_expired_tokens() {
    let (dir, secret) = generated();
    let out = natsgate(dir.path(), &["-c", "config.json", "gentoken", "-u", "alice"], &[]);
    let token = stdout(&out).trim().to_string();
    // Flip a character in the middle of the signature (the last one may
    // only carry padding bits).
    let mut bytes = token.clone().into_bytes();
    let i = token.rfind('.').unwrap() + 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let out = natsgate(dir.path(), &["-c", "config.json", "checktoken", &tampered], &[]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("bad signature"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(&secret) && !stderr(&out).contains(&tampered));

    let expired = natsgate::auth::mint_hs256(&secret, &serde_json::json!({"sub": "alice", "exp": natsgate_now() - 60}));
    let out = natsgate(dir.path(), &["-c", "config.json", "checktoken", &expired], &[]);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[test]
fn gentoken_without_a_secret_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = natsgate(dir.path(), &["gentoken", "-u", "alice"], &[]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("token_hmac_secret_key"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn bad_env_value_is_a_config_error_naming_the_variable() {
    let (dir, secret) = generated();
    let out = natsgate(dir.path(), &["-c", "config.json", "checkconfig"], &[("NATSGATE_PORT", "abc")]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("NATSGATE_PORT"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(&secret));
    let out =
        natsgate(dir.path(), &["-c", "config.json", "gentoken", "-u", "a"], &[("NATSGATE_PING_INTERVAL", "soon")]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("NATSGATE_PING_INTERVAL") && !stderr(&out).contains(&secret), "{}", stderr(&out));
}

#[test]
fn environment_overrides_the_file() {
    let (dir, _) = generated();
    // The file's port is valid; the variable's is not, and wins.
    let out = natsgate(dir.path(), &["-c", "config.json", "checkconfig"], &[("NATSGATE_PORT", "70000")]);
    assert_exit(&out, 78);
    // The file's secret is replaced by the variable's: tokens follow it.
    let env = [("NATSGATE_TOKEN_HMAC_SECRET_KEY", "from-the-environment")];
    let out = natsgate(dir.path(), &["-c", "config.json", "gentoken", "-u", "alice"], &env);
    let config = Config::from_iter([("NATSGATE_TOKEN_HMAC_SECRET_KEY".to_string(), env[0].1.to_string())]).unwrap();
    TokenVerifier::from_config(&config).unwrap().verify_connect(stdout(&out).trim()).unwrap();
}

#[test]
fn unknown_file_key_and_unknown_variable_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"port": 8000, "alow_subscribe_for_client": true}"#).unwrap();
    let out = natsgate(dir.path(), &["-c", "config.json", "checkconfig"], &[]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(err.contains("config.json") && err.contains("alow_subscribe_for_client"), "{err}");
    assert!(err.contains("allow_subscribe_for_client"), "suggests and lists the known keys: {err}");

    let out = natsgate(dir.path(), &["checkconfig"], &[("NATSGATE_PROT", "8000")]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("NATSGATE_PROT"), "{}", stderr(&out));
}

#[test]
fn broken_json_names_the_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.json"),
        "{\n  \"port\": 8000,\n  \"api_key\": \"hunter2-secret\"\n  \"x\": 1\n}\n",
    )
    .unwrap();
    let out = natsgate(dir.path(), &["-c", "broken.json", "checkconfig"], &[]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(err.contains("broken.json") && err.contains("line 4"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    let out = natsgate(dir.path(), &["-c", "missing.json", "checkconfig"], &[]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("missing.json"), "{}", stderr(&out));
}

#[test]
fn subject_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = natsgate(dir.path(), &["subject", "a.b"], &[]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "natsgate.ch._.a_2Eb\n");
    let out = natsgate(dir.path(), &["version"], &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("natsgate "), "{}", stdout(&out));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_exit(&natsgate(dir.path(), &["gentoken"], &[]), 2);
    assert_exit(&natsgate(dir.path(), &["no-such-command"], &[]), 2);
    assert_exit(&natsgate(dir.path(), &["gentoken", "-u", "a", "--info", "{not json"], &[]), 2);
}

fn natsgate_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The first run: no configuration at all. The gateway logs a development
/// token, and a client connects with it; the secret behind it is never logged.
#[tokio::test]
async fn first_run_logs_a_token_a_client_connects_with() {
    let gw = Gateway::builder().env("NATSGATE_LOG_FORMAT", "json").env("NATSGATE_LOG_LEVEL", "info").start();
    let log = gw.log();
    assert!(log.contains("DEVELOPMENT MODE"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("development connection token"))
        .unwrap_or_else(|| panic!("no token line:\n{log}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["level"], "WARN", "said loudly: {line}");
    let token = line["fields"]["token"].as_str().expect("token field").to_string();
    assert_eq!(line["fields"]["user"], "dev");
    let example = log.lines().find(|l| l.contains("try it: node -e")).unwrap_or_else(|| panic!("{log}"));
    assert!(example.contains(&token) && example.contains(&gw.ws_url()), "{example}");

    let mut client = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    let connected = client.connect_token(&token).await;
    assert!(connected["client"].as_str().is_some_and(|c| !c.is_empty()), "{connected}");
    // Only that ephemeral key: a token signed with another secret is refused.
    let mut other = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    other
        .send_json(&format!(r#"{{"id":1,"connect":{{"token":"{}"}}}}"#, hs256_token(SECRET, "u", None, json!(null))))
        .await;
    assert_eq!(other.expect_close(TIMEOUT).await.0, 3500);
}

/// With NATS (a deployment) nothing is made up: the server warns that
/// every client will be refused, and refuses them.
#[tokio::test(flavor = "multi_thread")]
async fn with_nats_a_missing_key_is_warned_about_and_refused() {
    let nats = tokio::task::block_in_place(NatsServer::start);
    let gw = Gateway::builder().nats(&nats).start();
    let log = gw.log();
    assert!(log.contains("no token key is configured") && log.contains("refused"), "{log}");
    assert!(!log.contains("DEVELOPMENT MODE"), "{log}");
    let mut c = WsClient::connect(&gw.ws_url(), Protocol::Json).await;
    c.send_json(&format!(r#"{{"id":1,"connect":{{"token":"{}"}}}}"#, hs256_token(SECRET, "u", None, json!(null))))
        .await;
    let (code, _) = c.expect_close(TIMEOUT).await;
    assert!(code == 3500 || code == 3501, "refused, got {code}");
}

/// `.env` in the working directory is read (as `.env.example` says);
/// variables set in the environment win; a broken line names its number,
/// not its content.
#[test]
fn dotenv_in_the_working_directory_is_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# comment\nNATSGATE_TOKEN_HMAC_SECRET_KEY=from-dotenv\nNATSGATE_PORT=8123\n",
    )
    .unwrap();
    let verify = |secret: &str, token: &str| {
        let config = Config::from_iter([("NATSGATE_TOKEN_HMAC_SECRET_KEY".to_string(), secret.to_string())]).unwrap();
        TokenVerifier::from_config(&config).unwrap().verify_connect(token).is_ok()
    };
    let out = natsgate(dir.path(), &["gentoken", "-u", "alice"], &[]);
    assert_exit(&out, 0);
    assert!(verify("from-dotenv", stdout(&out).trim()), "signed with the .env secret");
    let out = natsgate(dir.path(), &["gentoken", "-u", "alice"], &[("NATSGATE_TOKEN_HMAC_SECRET_KEY", "from-env")]);
    assert_exit(&out, 0);
    assert!(verify("from-env", stdout(&out).trim()), "the environment wins over .env");
    // `.env.example` copied to `.env`, as it says, is a valid configuration.
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example"), dir.path().join(".env")).unwrap();
    assert_exit(&natsgate(dir.path(), &["checkconfig"], &[]), 0);
    // .env values are checked like any other: a bad one is named.
    std::fs::write(dir.path().join(".env"), "NATSGATE_PORT=not-a-port\n").unwrap();
    let out = natsgate(dir.path(), &["checkconfig"], &[]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("NATSGATE_PORT"), "{}", stderr(&out));
    // A line that is not NAME=value: its number, never its content.
    std::fs::write(dir.path().join(".env"), "NATSGATE_PORT=8000\nhunter2 secret line\n").unwrap();
    let out = natsgate(dir.path(), &["checkconfig"], &[]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains(".env: line 2"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

/// What `genconfig` writes by default and the `.env` natsgate reads hold
/// secrets: git ignores both, wherever they are in the tree.
#[test]
fn files_with_secrets_are_git_ignored() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ignore = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for name in ["config.json", ".env"] {
        assert!(lines.contains(&name), ".gitignore lacks {name} (unanchored, so any directory)");
    }
    let dir = tempfile::tempdir().unwrap();
    assert_exit(&natsgate(dir.path(), &["genconfig"], &[]), 0);
    assert!(dir.path().join("config.json").is_file(), "genconfig's default output is config.json");
    // `--help` shows the first-run sequence.
    let out = natsgate(dir.path(), &["--help"], &[]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("First run:") && stdout(&out).contains("genconfig"), "{}", stdout(&out));
}

/// The variables the kubelet injects into every pod of a namespace that has
/// a Service named `natsgate` (all but `NATSGATE_PORT`, see below).
const SERVICE_LINKS: [(&str, &str); 6] = [
    ("NATSGATE_SERVICE_HOST", "10.96.0.7"),
    ("NATSGATE_SERVICE_PORT", "8000"),
    ("NATSGATE_PORT_8000_TCP", "tcp://10.96.0.7:8000"),
    ("NATSGATE_PORT_8000_TCP_PROTO", "tcp"),
    ("NATSGATE_PORT_8000_TCP_PORT", "8000"),
    ("NATSGATE_PORT_8000_TCP_ADDR", "10.96.0.7"),
];

/// Unknown variables (here Kubernetes service links) do not stop the
/// gateway: it warns, naming them, and serves, as Centrifugo does.
#[test]
fn unknown_variables_are_a_warning_when_serving() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_natsgate"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("NATSGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir.path())
        .env("NATSGATE_PORT", &port)
        .env("NATSGATE_TOKEN_HMAC_SECRET_KEY", "cli-test-secret")
        .env("NATSGATE_PROT", "1")
        .envs(SERVICE_LINKS)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn natsgate");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !log.contains("listening on") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => log.push_str(&(line + "\n")),
            Err(_) => break,
        }
    }
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(exited.is_none() && log.contains("listening on"), "the gateway serves: {log}");
    assert!(log.contains("WARN") && log.contains("unknown configuration names"), "{log}");
    for (name, _) in SERVICE_LINKS {
        assert!(log.contains(name), "the warning names {name}: {log}");
    }
    assert!(log.contains("NATSGATE_PROT (did you mean NATSGATE_PORT?)"), "{log}");
    assert!(log.contains("enableServiceLinks: false"), "{log}");
    assert!(!log.contains("10.96.0.7"), "values are not shown: {log}");
}

/// `checkconfig` still refuses them: before deploy they are most likely typos.
#[test]
fn checkconfig_refuses_unknown_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = natsgate(dir.path(), &["checkconfig"], &SERVICE_LINKS);
    assert_exit(&out, 78);
    let err = stderr(&out);
    for (name, _) in SERVICE_LINKS {
        assert!(err.contains(name), "{name}: {err}");
    }
    assert!(err.contains("enableServiceLinks: false"), "{err}");
}

/// `NATSGATE_PORT=tcp://10.96.0.7:8000` is the kubelet's link to a Service
/// named `natsgate`, not a port: the error says so and how to avoid it.
#[test]
fn port_holding_a_service_link_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&[][..], &["checkconfig"][..]] {
        let out = natsgate(dir.path(), args, &[("NATSGATE_PORT", "tcp://10.96.0.7:8000")]);
        assert_exit(&out, 78);
        let err = stderr(&out);
        assert!(err.contains("NATSGATE_PORT") && err.contains("Kubernetes service link"), "{err}");
        assert!(err.contains("enableServiceLinks: false"), "{err}");
    }
}

/// `--set NAME=VALUE` flags override the file and the variables; a bad one
/// is named as a flag, and a name that is no option is refused.
#[test]
fn set_flags_override_the_file_and_the_environment() {
    let (dir, _) = generated();
    let env = [("NATSGATE_TOKEN_HMAC_SECRET_KEY", "from-the-environment")];
    let out = natsgate(
        dir.path(),
        &["-c", "config.json", "--set", "token_hmac_secret_key=from-a-flag", "gentoken", "-u", "a"],
        &env,
    );
    assert_exit(&out, 0);
    let config =
        Config::from_iter([("NATSGATE_TOKEN_HMAC_SECRET_KEY".to_string(), "from-a-flag".to_string())]).unwrap();
    TokenVerifier::from_config(&config)
        .unwrap()
        .verify_connect(stdout(&out).trim())
        .expect("signed with the flag's key");

    let out = natsgate(dir.path(), &["-c", "config.json", "checkconfig", "--set", "port=hunter2"], &[]);
    assert_exit(&out, 78);
    let err = stderr(&out);
    assert!(err.contains("NATSGATE_PORT") && err.contains("--set port") && !err.contains("hunter2"), "{err}");
    let out = natsgate(dir.path(), &["checkconfig", "--set", "prot=8000"], &[]);
    assert_exit(&out, 78);
    assert!(stderr(&out).contains("did you mean `port`"), "{}", stderr(&out));
    assert_exit(&natsgate(dir.path(), &["checkconfig", "--set", "port"], &[]), 2);
}
