//! Reading, layering and checking the options, from in-memory sources.

use super::*;
use std::time::Duration;

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults_are_valid() {
    let c = Config::from_iter(vars(&[])).unwrap();
    assert_eq!(c.port, 8000);
    assert_eq!(c.listen_addr().to_string(), "127.0.0.1:8000");
    assert_eq!(c.ping_interval, Duration::from_secs(25));
    assert!(c.nats_url.is_none());
}

#[test]
fn reads_prefixed_variables() {
    let c = Config::from_iter(vars(&[
        ("NATSGATE_PORT", "9001"),
        ("NATSGATE_PING_INTERVAL", "3s"),
        ("NATSGATE_PONG_TIMEOUT", "500ms"),
        ("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "true"),
        ("NATSGATE_NATS_URL", "nats://127.0.0.1:4222"),
        ("OTHER_PORT", "1"),
    ]))
    .unwrap();
    assert_eq!(c.port, 9001);
    assert_eq!(c.pong_timeout, Duration::from_millis(500));
    assert!(c.channel.allow_publish_for_client);
    assert_eq!(c.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
}

#[test]
fn bad_value_names_the_variable() {
    let err = Config::from_iter(vars(&[("NATSGATE_PORT", "eighty")])).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_PORT"), "{err}");
    let err = Config::from_iter(vars(&[("NATSGATE_NATS_PREFIX", "a.>")])).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_NATS_PREFIX"), "{err}");
    let err = Config::from_iter(vars(&[("NATSGATE_PING_INTERVAL", "soon")])).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_PING_INTERVAL"), "{err}");
}

#[test]
fn secret_values_are_not_echoed() {
    let err =
        Config::from_iter(vars(&[("NATSGATE_ALLOW_PUBLISH_FOR_CLIENT", "hunter2-secret")])).unwrap_err().to_string();
    assert!(!err.contains("hunter2-secret"), "{err}");
}

#[test]
fn grpc_api_needs_a_key_and_both_tls_files() {
    let err = |v: &[(&str, &str)]| Config::from_sources(None, vars(v)).err().map(|e| e.to_string());
    let refused = err(&[("NATSGATE_GRPC_API", "true")]).expect("no key");
    assert!(refused.contains("NATSGATE_GRPC_API_KEY"), "{refused}");
    let c = Config::from_sources(None, vars(&[("NATSGATE_GRPC_API", "true"), ("NATSGATE_GRPC_API_KEY", "k")]))
        .expect("valid");
    assert_eq!(c.grpc_api_addr(), "127.0.0.1:10000".parse().unwrap());
    assert!(err(&[("NATSGATE_GRPC_API_TLS_CERT", "cert.pem")]).is_some(), "a certificate needs its key");
    assert!(err(&[("NATSGATE_GRPC_API_ERROR_MODE", "custom")]).is_some());
    assert!(err(&[("NATSGATE_GRPC_API_ADDRESS", "localhost")]).is_some(), "an IP address");
}

#[test]
fn option_names_come_from_the_struct() {
    let names = Config::option_names();
    for name in ["address", "port", "token_hmac_secret_key", "ping_interval", "log_format"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    for not_option in ["config", "channel", "rules", "unknown"] {
        assert!(!names.iter().any(|n| n == not_option), "{not_option} in {names:?}");
    }
}

#[test]
fn file_entries_are_options_and_env_overrides_them() {
    let file = serde_json::json!({
        "port": 9100,
        "allow_subscribe_for_client": true,
        "ping_interval": "3s",
        "pong_timeout": "1s",
        "api_key": "k1",
        "nats_url": null,
    });
    let c = Config::from_sources(Some(file.clone()), vars(&[])).unwrap();
    assert_eq!(c.port, 9100);
    assert!(c.channel.allow_subscribe_for_client);
    assert_eq!(c.ping_interval, Duration::from_secs(3));
    assert_eq!(c.api_key.as_deref(), Some("k1"));
    assert!(c.nats_url.is_none());

    let env = vars(&[("NATSGATE_PORT", "9200"), ("NATSGATE_API_KEY", ""), ("NATSGATE_CONFIG", "x.json")]);
    let c = Config::from_sources(Some(file), env).unwrap();
    assert_eq!(c.port, 9200, "the environment wins");
    assert_eq!(c.api_key.as_deref(), Some("k1"), "an empty variable is unset");
}

#[test]
fn unknown_file_key_is_named_with_a_suggestion() {
    let c = Config::from_sources(Some(serde_json::json!({"prot": 1, "port": 9100})), vars(&[])).unwrap();
    assert_eq!(c.port, 9100, "the known keys still apply");
    assert_eq!(c.unknown, ["config file key `prot` (did you mean `port`?)"]);
    let file = serde_json::json!({"token_hmac_secret": "hunter2-secret"});
    let message = Config::from_sources(Some(file), vars(&[])).unwrap().unknown_names_message().unwrap();
    assert!(message.contains("did you mean `token_hmac_secret_key`"), "{message}");
    assert!(!message.contains("hunter2-secret"), "{message}");
    let err = Config::from_sources(Some(serde_json::json!(["port"])), vars(&[])).unwrap_err().to_string();
    assert!(err.contains("JSON object"), "{err}");
}

#[test]
fn unknown_variables_are_named_not_fatal() {
    let c = Config::from_iter(vars(&[("NATSGATE_PROT", "1"), ("NATSGATE_WHATEVER", ""), ("NATSGATE_PORT", "9001")]))
        .unwrap();
    assert_eq!(c.port, 9001);
    let message = c.unknown_names_message().unwrap();
    assert!(message.contains("NATSGATE_PROT (did you mean NATSGATE_PORT?)"), "{message}");
    assert!(message.contains("NATSGATE_WHATEVER"), "{message}");
    assert!(!message.contains("Kubernetes"), "{message}");
    let c = Config::from_iter(vars(&[("NATSGATE_CONFIG", "/etc/natsgate.json")])).unwrap();
    assert!(c.unknown_names_message().is_none());
}

/// What the kubelet injects for a Service named `natsgate`.
#[test]
fn kubernetes_service_links_are_a_warning() {
    let links = [
        ("NATSGATE_SERVICE_HOST", "10.0.0.7"),
        ("NATSGATE_SERVICE_PORT", "8000"),
        ("NATSGATE_SERVICE_PORT_HTTP", "8000"),
        ("NATSGATE_PORT_8000_TCP", "tcp://10.0.0.7:8000"),
        ("NATSGATE_PORT_8000_TCP_PROTO", "tcp"),
        ("NATSGATE_PORT_8000_TCP_PORT", "8000"),
        ("NATSGATE_PORT_8000_TCP_ADDR", "10.0.0.7"),
        ("NATSGATE_NATS_SERVICE_HOST", "10.0.0.8"),
    ];
    let c = Config::from_iter(vars(&links)).unwrap();
    assert_eq!(c.unknown.len(), links.len(), "{:?}", c.unknown);
    let message = c.unknown_names_message().unwrap();
    for (name, _) in links {
        assert!(message.contains(name), "{message}");
        assert!(!message.contains(&format!("{name} (did")), "no spelling hint for {name}: {message}");
    }
    assert!(!message.contains("10.0.0."), "values are not shown: {message}");
    assert!(message.contains("enableServiceLinks: false"), "{message}");
    for name in ["NATSGATE_PORT_8000_TCP", "NATSGATE_SERVICE_HOST", "NATSGATE_X_Y_SERVICE_PORT", "NATSGATE_X_PORT"] {
        assert!(sources::looks_like_service_link(name), "{name}");
    }
    for name in ["NATSGATE_PROT", "NATSGATE_SERVICE", "NATSGATE_x_PORT", "OTHER_PORT"] {
        assert!(!sources::looks_like_service_link(name), "{name}");
    }
}

#[test]
fn a_port_holding_a_service_link_says_so() {
    for (var, service) in [("NATSGATE_PORT", "`natsgate`"), ("NATSGATE_INTERNAL_PORT", "`natsgate-internal`")] {
        let err = Config::from_iter(vars(&[(var, "tcp://10.0.0.7:8000")])).unwrap_err().to_string();
        assert!(err.contains(var) && err.contains("Kubernetes service link"), "{err}");
        assert!(err.contains("enableServiceLinks: false") && err.contains(service), "{err}");
        assert!(!err.contains("10.0.0.7"), "the value is not echoed: {err}");
    }
}

#[test]
fn bad_file_value_names_variable_and_key_but_not_value() {
    let file = serde_json::json!({"port": "hunter2-secret"});
    let err = Config::from_sources(Some(file), vars(&[])).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_PORT") && err.contains("config file key `port`"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    let file = serde_json::json!({"ping_interval": "1s", "pong_timeout": "2s"});
    let err = Config::from_sources(Some(file), vars(&[])).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_PONG_TIMEOUT") && err.contains("`pong_timeout`"), "{err}");
}

#[test]
fn bad_json_file_names_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("natsgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.json");
    std::fs::write(&path, "{\n  \"port\": 8000\n  \"api_key\": \"hunter2-secret\"\n}\n").unwrap();
    let err = sources::read_json_file(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("broken.json") && err.contains("line 3 column 3"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
}

#[test]
fn history_meta_ttl_outlives_every_history_ttl() {
    let c = Config::from_iter(vars(&[])).unwrap();
    assert_eq!(c.history_meta_ttl, Duration::from_secs(30 * 24 * 3600), "Centrifugo's default: 30 days");
    let ns = r#"[{"name":"chat","history_size":10,"history_ttl":"48h"}]"#;
    let c = Config::from_iter(vars(&[("NATSGATE_NAMESPACES", ns), ("NATSGATE_HISTORY_META_TTL", "48h")])).unwrap();
    assert_eq!(c.history_meta_ttl, Duration::from_secs(48 * 3600), "equal to the longest history_ttl");
    let err = Config::from_iter(vars(&[("NATSGATE_NAMESPACES", ns), ("NATSGATE_HISTORY_META_TTL", "47h")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NATSGATE_HISTORY_META_TTL") && err.contains("namespace `chat`"), "{err}");
    let top = [("NATSGATE_HISTORY_SIZE", "10"), ("NATSGATE_HISTORY_TTL", "2h"), ("NATSGATE_HISTORY_META_TTL", "1h")];
    let err = Config::from_iter(vars(&top)).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_HISTORY_META_TTL") && err.contains("NATSGATE_HISTORY_TTL"), "{err}");
    let err = Config::from_iter(vars(&[("NATSGATE_HISTORY_META_TTL", "0s")])).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_HISTORY_META_TTL"), "{err}");
    let c = Config::from_sources(Some(serde_json::json!({"history_meta_ttl": "1h"})), vars(&[])).unwrap();
    assert_eq!(c.history_meta_ttl, Duration::from_secs(3600), "a config file key");
}

/// `.env.example` lists exactly the options, each with a comment, and
/// its values are valid.
#[test]
fn env_example_lists_every_option() {
    let text = include_str!("../../.env.example");
    let mut listed = Vec::new();
    let mut previous = "";
    for line in text.lines() {
        if let Some((name, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            assert!(previous.starts_with("# "), "{name} has no comment line above it");
            listed.push(name.strip_prefix(ENV_PREFIX).unwrap_or_else(|| panic!("{name}: no prefix")).to_lowercase());
        }
        previous = line;
    }
    let mut expected: Vec<String> = Config::option_names().iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, expected, ".env.example and Config disagree");
    let pairs = text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once('='));
    Config::from_iter(pairs.map(|(k, v)| (k.to_string(), v.to_string()))).expect(".env.example values are valid");
}

/// Sources layer in order: defaults, file, variables, `--set` flags.
#[test]
fn flags_win_over_variables_which_win_over_the_file() {
    let file = serde_json::json!({"port": 9100, "ping_interval": "3s", "pong_timeout": "1s", "api_key": "file"});
    let env = vars(&[("NATSGATE_PORT", "9200"), ("NATSGATE_API_KEY", "env")]);
    let flags = [("port".to_string(), "9300".to_string()), ("api_key".to_string(), String::new())];
    let c = Config::layered(Some(file), env, &flags).unwrap();
    assert_eq!(c.port, 9300, "the flag wins");
    assert_eq!(c.api_key.as_deref(), Some("env"), "an empty flag is unset, as an empty variable");
    assert_eq!(c.ping_interval, Duration::from_secs(3), "the file's value stands where nothing overrides it");
    assert_eq!(c.pong_timeout, Duration::from_secs(1));
    assert_eq!(c.client_channel_limit, 128, "the default stands where nothing sets it");

    let err = Config::layered(None, vars(&[]), &[("prot".into(), "1".into())]).unwrap_err().to_string();
    assert!(err.contains("--set prot") && err.contains("did you mean `port`"), "a flag that is no option: {err}");
    let err = Config::layered(None, vars(&[]), &[("port".into(), "hunter2-secret".into())]).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_PORT") && err.contains("--set port") && !err.contains("hunter2"), "{err}");
}

/// Top-level channel options are `ChannelOptions` flattened into `Config`:
/// numbers and booleans arrive as JSON values from the file and as text
/// from variables, and both parse.
#[test]
fn flattened_channel_options_take_values_and_text() {
    let file = serde_json::json!({"history_size": 10, "history_ttl": "1m", "presence": true, "join_leave": true});
    let c = Config::from_sources(Some(file), vars(&[("NATSGATE_HISTORY_SIZE", "20")])).unwrap();
    assert_eq!(c.channel.history_size, 20);
    assert_eq!(c.channel.history_ttl, Some(Duration::from_secs(60)));
    assert!(c.channel.presence && c.channel.join_leave);
    assert_eq!(c.rules.namespace(""), Some(&c.channel), "the rules are built from the same options");

    let err = Config::from_sources(Some(serde_json::json!({"presence": "hunter2-secret"})), vars(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NATSGATE_PRESENCE") && err.contains("config file key `presence`"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
}

/// Namespaces: an array in the file, JSON text in a variable; regexes are
/// compiled once, when read, and the rules are ready to use.
#[test]
fn namespaces_from_file_or_variable_become_rules() {
    let list = serde_json::json!([{"name": "chat", "channel_regex": "^[a-z]+$", "allow_subscribe_for_client": true}]);
    let from_file = Config::from_sources(Some(serde_json::json!({"namespaces": list.clone()})), vars(&[])).unwrap();
    let from_env = Config::from_iter(vars(&[("NATSGATE_NAMESPACES", &list.to_string())])).unwrap();
    assert_eq!(from_file.namespaces, from_env.namespaces);
    let chat = from_env.rules.namespace("chat").expect("namespace chat");
    assert!(chat.allow_subscribe_for_client);
    assert!(from_env.rules.resolve("chat:room").is_ok());
    assert!(from_env.rules.resolve("chat:Room").is_err(), "the regex applies");
    assert!(from_env.rules.resolve("other:room").is_err(), "an unknown namespace");
}

/// Strings with a fixed set of values are enums, addresses are addresses.
#[test]
fn modes_and_addresses_are_typed_when_read() {
    let c = Config::from_iter(vars(&[
        ("NATSGATE_API_ERROR_MODE", "transport"),
        ("NATSGATE_LOG_FORMAT", "json"),
        ("NATSGATE_ADDRESS", "::1"),
        ("NATSGATE_ALLOWED_ORIGINS", "https://*.example.com"),
    ]))
    .unwrap();
    assert_eq!(c.api_error_mode, ErrorMode::Transport);
    assert_eq!(c.grpc_api_error_mode, ErrorMode::Body);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.listen_addr().to_string(), "[::1]:8000");
    assert_eq!(c.allowed_origins.to_string(), "https://*.example.com");
    let err = Config::from_iter(vars(&[("NATSGATE_LOG_FORMAT", "xml")])).unwrap_err().to_string();
    assert!(err.contains("NATSGATE_LOG_FORMAT") && err.contains("`text` or `json`"), "{err}");
}
