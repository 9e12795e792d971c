//! The permission matrix, as a table: each option alone, each kind of client.

use super::*;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
enum Client {
    Anonymous,
    Authenticated,
    Subscriber,
    AnonymousSubscriber,
    TokenHolder,
}

impl Client {
    fn actor(self) -> Actor<'static> {
        match self {
            Client::Anonymous => Actor { user: "", subscribed: false },
            Client::Authenticated => Actor { user: "42", subscribed: false },
            Client::Subscriber | Client::TokenHolder => Actor { user: "42", subscribed: true },
            Client::AnonymousSubscriber => Actor { user: "", subscribed: true },
        }
    }
}

const ALL: [Client; 5] =
    [Client::Anonymous, Client::Authenticated, Client::Subscriber, Client::AnonymousSubscriber, Client::TokenHolder];

fn rules_with(set: impl Fn(&mut ChannelOptions)) -> ChannelRules {
    let mut o = ChannelOptions {
        presence: true,
        history_size: 10,
        history_ttl: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    set(&mut o);
    ChannelRules::new(ChannelOptions::default(), vec![("ns".into(), o)], 255).unwrap()
}

/// (option set, client) -> allowed? for subscribe, publish, presence, history.
#[test]
fn permission_matrix() {
    type Set = fn(&mut ChannelOptions);
    // Expected results in the order of ALL:
    // Anonymous, Authenticated, Subscriber, AnonymousSubscriber, TokenHolder
    type Allowed = [bool; 5];
    // (name, option set, subscribe, publish, presence, history)
    type Row = (&'static str, Set, Allowed, Allowed, Allowed, Allowed);
    let table: &[Row] = &[
        ("nothing", |_| {}, [false, false, false, false, true], [false; 5], [false; 5], [false; 5]),
        (
            "allow_subscribe_for_client",
            |o| o.allow_subscribe_for_client = true,
            [false, true, true, false, true],
            [false; 5],
            [false; 5],
            [false; 5],
        ),
        (
            "allow_subscribe_for_anonymous alone",
            |o| o.allow_subscribe_for_anonymous = true,
            [false, false, false, false, true],
            [false; 5],
            [false; 5],
            [false; 5],
        ),
        (
            "allow_subscribe_for_client+anonymous",
            |o| {
                o.allow_subscribe_for_client = true;
                o.allow_subscribe_for_anonymous = true
            },
            [true, true, true, true, true],
            [false; 5],
            [false; 5],
            [false; 5],
        ),
        (
            "allow_publish_for_client",
            |o| o.allow_publish_for_client = true,
            [false, false, false, false, true],
            [false, true, true, false, true],
            [false; 5],
            [false; 5],
        ),
        (
            "allow_publish_for_subscriber",
            |o| o.allow_publish_for_subscriber = true,
            [false, false, false, false, true],
            [false, false, true, false, true],
            [false; 5],
            [false; 5],
        ),
        (
            "allow_publish_for_client+anonymous",
            |o| {
                o.allow_publish_for_client = true;
                o.allow_publish_for_anonymous = true
            },
            [false, false, false, false, true],
            [true; 5],
            [false; 5],
            [false; 5],
        ),
        (
            "allow_publish_for_subscriber+anonymous",
            |o| {
                o.allow_publish_for_subscriber = true;
                o.allow_publish_for_anonymous = true
            },
            [false, false, false, false, true],
            [false, false, true, true, true],
            [false; 5],
            [false; 5],
        ),
        (
            "allow_presence_for_client",
            |o| o.allow_presence_for_client = true,
            [false, false, false, false, true],
            [false; 5],
            [false, true, true, false, true],
            [false; 5],
        ),
        (
            "allow_presence_for_subscriber",
            |o| o.allow_presence_for_subscriber = true,
            [false, false, false, false, true],
            [false; 5],
            [false, false, true, false, true],
            [false; 5],
        ),
        (
            "allow_presence_for_client+anonymous",
            |o| {
                o.allow_presence_for_client = true;
                o.allow_presence_for_anonymous = true
            },
            [false, false, false, false, true],
            [false; 5],
            [true; 5],
            [false; 5],
        ),
        (
            "allow_history_for_client",
            |o| o.allow_history_for_client = true,
            [false, false, false, false, true],
            [false; 5],
            [false; 5],
            [false, true, true, false, true],
        ),
        (
            "allow_history_for_subscriber",
            |o| o.allow_history_for_subscriber = true,
            [false, false, false, false, true],
            [false; 5],
            [false; 5],
            [false, false, true, false, true],
        ),
        (
            "allow_history_for_subscriber+anonymous",
            |o| {
                o.allow_history_for_subscriber = true;
                o.allow_history_for_anonymous = true
            },
            [false, false, false, false, true],
            [false; 5],
            [false; 5],
            [false, false, true, true, true],
        ),
    ];
    for (name, set, subscribe, publish, presence, history) in table {
        let rules = rules_with(*set);
        let r = rules.resolve("ns:room").unwrap();
        for (i, client) in ALL.iter().enumerate() {
            let a = client.actor();
            let token = matches!(client, Client::TokenHolder);
            let got = [
                r.can_subscribe(a, token).is_ok(),
                r.can_publish(a).is_ok(),
                r.can_presence(a).is_ok(),
                r.can_history(a).is_ok(),
            ];
            let want = [subscribe[i], publish[i], presence[i], history[i]];
            assert_eq!(got, want, "{name}, {client:?}: [subscribe, publish, presence, history]");
        }
    }
}

#[test]
fn denials_use_centrifugo_codes() {
    let rules = rules_with(|o| o.allow_subscribe_for_client = true);
    let me = Actor { user: "42", subscribed: false };
    assert_eq!(rules.resolve("other:room").err(), Some(ErrorCode::UNKNOWN_CHANNEL));
    assert_eq!(rules.resolve(&"x".repeat(256)).err(), Some(ErrorCode::BAD_REQUEST));
    assert_eq!(rules.resolve("ns:ключ").err(), Some(ErrorCode::BAD_REQUEST));
    assert_eq!(rules.resolve("ns:room").unwrap().can_publish(me), Err(ErrorCode::PERMISSION_DENIED));
    // Presence or history switched off: not available, whatever the permissions.
    let off = ChannelRules::new(
        ChannelOptions { allow_presence_for_client: true, allow_history_for_client: true, ..Default::default() },
        vec![],
        255,
    )
    .unwrap();
    let r = off.resolve("room").unwrap();
    assert_eq!(r.can_presence(me), Err(ErrorCode::NOT_AVAILABLE));
    assert_eq!(r.can_history(me), Err(ErrorCode::NOT_AVAILABLE));
}

#[test]
fn private_channels_need_a_token() {
    let rules = rules_with(|o| o.allow_subscribe_for_client = true);
    let me = Actor { user: "42", subscribed: false };
    let r = rules.resolve("$ns:secret").unwrap();
    assert!(r.private);
    assert_eq!(r.can_subscribe(me, false), Err(ErrorCode::PERMISSION_DENIED));
    assert_eq!(r.can_subscribe(me, true), Ok(()));
}

#[test]
fn user_limited_channels() {
    let rules = rules_with(|o| o.allow_user_limited_channels = true);
    let r = rules.resolve("ns:dialog#42,43").unwrap();
    assert_eq!(r.can_subscribe(Actor { user: "42", subscribed: false }, false), Ok(()));
    assert_eq!(r.can_subscribe(Actor { user: "43", subscribed: false }, false), Ok(()));
    assert_eq!(r.can_subscribe(Actor { user: "44", subscribed: false }, false), Err(ErrorCode::PERMISSION_DENIED));
    assert_eq!(r.can_subscribe(Actor { user: "", subscribed: false }, false), Err(ErrorCode::PERMISSION_DENIED));
    // Without the option `#` is an ordinary character and the usual rules apply.
    let plain = rules_with(|_| {});
    let r = plain.resolve("ns:dialog#42,43").unwrap();
    assert_eq!(r.can_subscribe(Actor { user: "42", subscribed: false }, false), Err(ErrorCode::PERMISSION_DENIED));
}

#[test]
fn channel_regex_applies_to_the_name_after_the_namespace() {
    let rules = rules_with(|o| {
        o.allow_subscribe_for_client = true;
        o.channel_regex = "^[a-z]+$".parse().unwrap();
    });
    assert!(rules.resolve("ns:room").is_ok());
    assert_eq!(rules.resolve("ns:Room1").err(), Some(ErrorCode::BAD_REQUEST));
}

#[test]
fn namespace_config_errors_name_the_problem() {
    let err = parse_namespaces(r#"[{"name":"x"}]"#).unwrap_err();
    assert!(err.contains("invalid namespace name"), "{err}");
    let err = parse_namespaces(r#"[{"name":"chat","allow_subscribe_for_clients":true}]"#).unwrap_err();
    assert!(err.contains("chat") && err.contains("allow_subscribe_for_clients"), "{err}");
    let err = parse_namespaces(r#"[{"name":"chat","channel_regex":"("}]"#).unwrap_err();
    assert!(err.contains("channel_regex"), "{err}");
    let err = parse_namespaces(r#"[{"name":"chat"},{"name":"chat"}]"#).unwrap_err();
    assert!(err.contains("twice"), "{err}");
    let err = parse_namespaces(r#"[{"name":"chat","history_size":10}]"#).unwrap_err();
    assert!(err.contains("history_ttl"), "{err}");
    let ok =
        parse_namespaces(r#"[{"name":"chat","history_size":10,"history_ttl":"5m","allow_recovery":true}]"#).unwrap();
    assert_eq!(ok[0].1.history_ttl, Some(Duration::from_secs(300)));
}
