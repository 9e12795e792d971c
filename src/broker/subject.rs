//! The channel -> NATS subject mapping: a security boundary.
//!
//! A channel becomes `<prefix>.ch.<ns>.<name>`, where `<ns>` is the encoded
//! namespace (`_` for channels without one) and `<name>` the encoded full
//! channel name. The encoding keeps ASCII letters, digits and `-`, and writes
//! every other byte as `_` plus two upper-case hex digits (`.` -> `_2E`,
//! `*` -> `_2A`, `_` -> `_5F`); the empty string becomes a lone `_`.
//!
//! Why this shape:
//! - injective: the escape is prefix-free, so two channels never share a subject;
//! - safe: encoded tokens never contain `.`, `*`, `>` or white space, and are
//!   never empty, so no channel can become a wildcard or reach another subject;
//! - namespace-aware: all of namespace `ns` lies under `<prefix>.ch.ns.>`, so
//!   one NATS subscription or JetStream stream can cover a namespace;
//! - readable: `chat:room-1` -> `natsgate.ch.chat.chat_3Aroom-1`.

use std::fmt::Write;

use crate::channels::namespace_of;

/// Encodes one subject token; see the module docs.
pub fn encode_token(raw: &str) -> String {
    if raw.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for &b in raw.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "_{b:02X}");
        }
    }
    out
}

/// Decodes a token made by [`encode_token`]; None for anything it could not make.
pub fn decode_token(token: &str) -> Option<String> {
    // `encode_token` never writes an empty token (the empty name is `_`), so
    // an empty one (a subject ending in `.`) names no channel; read as the
    // empty name it would map back to another subject (found by fuzzing).
    if token.is_empty() {
        return None;
    }
    if token == "_" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b);
            i += 1;
        } else if b == b'_' {
            let hex = token.get(i + 1..i + 3)?;
            if !hex.bytes().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(&h)) {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            // Canonical form only: a byte that is kept as-is must not be escaped.
            if v.is_ascii_alphanumeric() || v == b'-' {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// How many buckets users are hashed into. A gateway subscribes the
/// bucket of each user it serves, so it holds at most this many user-command
/// subscriptions however many users connect, and a connect waits for NATS
/// only when its bucket is new to the gateway. Every gateway must agree on
/// it (and on the hash), so it is not configurable.
pub const USER_BUCKETS: u32 = 1024;

/// A user's bucket: FNV-1a of the name, stable across processes
/// and versions (std's hasher is randomised per process).
pub fn user_bucket(user: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in user.as_bytes() {
        hash ^= b as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % USER_BUCKETS
}

/// Maps channels to subjects under one prefix.
#[derive(Clone, Debug)]
pub struct SubjectMap {
    channels: String,
    prefix: String,
}

impl SubjectMap {
    /// `prefix` is validated by config: dot-separated safe tokens.
    pub fn new(prefix: &str) -> Self {
        SubjectMap { channels: format!("{prefix}.ch."), prefix: prefix.to_string() }
    }

    /// Where a history namespace's stream republishes each stored message,
    /// with its stream sequence in headers: `<prefix>.rp.<ns>.<name>`.
    pub fn republish_subject(&self, channel: &str) -> String {
        format!("{}.rp.{}.{}", self.prefix, encode_token(namespace_of(channel)), encode_token(channel))
    }

    /// The republish wildcard of a namespace.
    pub fn republish_wildcard(&self, namespace: &str) -> String {
        format!("{}.rp.{}.>", self.prefix, encode_token(namespace))
    }

    /// The JetStream stream holding a namespace's history.
    pub fn stream_name(&self, namespace: &str) -> String {
        format!("{}_{}", self.prefix.replace('.', "_"), encode_token(namespace))
    }

    /// The JetStream stream keeping a history namespace's positions (the
    /// last publication of each channel, sourced from its history stream):
    /// `<history stream>_meta`. No history stream of the same prefix can
    /// have this name, since an encoded namespace never contains `_m` (its
    /// escapes are `_` and two hex digits).
    pub fn meta_stream_name(&self, namespace: &str) -> String {
        format!("{}_meta", self.stream_name(namespace))
    }

    /// User commands for one user's connections:
    /// `<prefix>.user.<bucket>.<user>` (see [`user_bucket`]).
    pub fn user_subject(&self, user: &str) -> String {
        format!("{}.user.{}.{}", self.prefix, user_bucket(user), encode_token(user))
    }

    /// Every user subject of one bucket: what a gateway subscribes.
    pub fn user_bucket_wildcard(&self, bucket: u32) -> String {
        format!("{}.user.{bucket}.*", self.prefix)
    }

    /// The user a user subject addresses, if it is well formed.
    pub fn user_of(&self, subject: &str) -> Option<String> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".user.")?;
        let (_bucket, token) = rest.split_once('.')?;
        decode_token(token)
    }

    /// Questions every gateway answers (`info`, `channels`).
    /// The subject of one gateway (its unique id), for requests only it
    /// answers. None for a node that is not a plain token (letters, digits,
    /// `-`, at most 64): a client sends it, and it must never become a
    /// wildcard or reach another subject.
    pub fn node_subject(&self, node: &str) -> Option<String> {
        let plain =
            !node.is_empty() && node.len() <= 64 && node.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        plain.then(|| format!("{}.node.{node}", self.prefix))
    }

    pub fn survey_subject(&self) -> String {
        format!("{}.survey", self.prefix)
    }

    /// The NATS subject carrying a channel's publications.
    pub fn channel_subject(&self, channel: &str) -> String {
        format!("{}{}.{}", self.channels, encode_token(namespace_of(channel)), encode_token(channel))
    }

    /// A wildcard covering every channel of a namespace ("" = no namespace).
    pub fn namespace_wildcard(&self, namespace: &str) -> String {
        format!("{}{}.>", self.channels, encode_token(namespace))
    }

    /// The channel a subject carries, if it is a well-formed channel subject.
    pub fn channel_of(&self, subject: &str) -> Option<String> {
        let rest = subject.strip_prefix(&self.channels)?;
        let (ns, name) = rest.split_once('.')?;
        let channel = decode_token(name)?;
        (encode_token(namespace_of(&channel)) == ns).then_some(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The fuzzer's crash (fuzz target `nats_message`): a subject whose last
    /// token is empty was read as the empty channel name, whose subject is
    /// `natsgate.ch._._`, not the subject it came from.
    #[test]
    fn a_subject_ending_in_a_dot_names_no_channel() {
        let map = SubjectMap::new("natsgate");
        assert_eq!(map.channel_subject(""), "natsgate.ch._._");
        assert_eq!(map.channel_of("natsgate.ch._."), None);
        assert_eq!(map.channel_of("natsgate.ch._._").as_deref(), Some(""));
        assert_eq!(decode_token(""), None);
    }

    const NASTY: &[&str] = &[
        "",
        "a",
        "a.b",
        "a.*",
        "a.>",
        ">",
        "*",
        "a b",
        "a\tb",
        "a\nb",
        "_",
        "__",
        "_2E",
        ".",
        "..",
        "a_2Eb",
        "ns:a",
        "ns:a.b",
        "$ns:x",
        "$",
        "ns:",
        ":",
        "::",
        "ключ",
        "频道",
        "emoji🎉",
        "a#42,43",
        "dialog#42,43",
        "ns:>",
        "ns.*:x",
    ];

    fn is_safe_token(t: &str) -> bool {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn subjects_are_safe_tokens() {
        let map = SubjectMap::new("natsgate");
        let long = "x.".repeat(200);
        for ch in NASTY.iter().copied().chain([long.as_str()]) {
            let s = map.channel_subject(ch);
            let tokens: Vec<&str> = s.split('.').collect();
            assert_eq!(tokens.len(), 4, "{ch:?} -> {s}");
            assert_eq!(&tokens[..2], &["natsgate", "ch"]);
            assert!(tokens.iter().all(|t| is_safe_token(t)), "{ch:?} -> {s}");
        }
    }

    #[test]
    fn user_subjects_are_safe_and_reversible() {
        let map = SubjectMap::new("natsgate");
        for user in NASTY {
            let s = map.user_subject(user);
            let tokens: Vec<&str> = s.split('.').collect();
            assert_eq!(tokens.len(), 4, "{user:?} -> {s}");
            assert_eq!(&tokens[..2], &["natsgate", "user"]);
            assert!(tokens.iter().all(|t| is_safe_token(t)), "{user:?} -> {s}");
            assert_eq!(tokens[2], user_bucket(user).to_string());
            assert_eq!(map.user_of(&s).as_deref(), Some(*user), "{s}");
        }
        assert_eq!(map.user_bucket_wildcard(7), "natsgate.user.7.*");
        assert_eq!(map.user_of("natsgate.ch._.x"), None);
        assert_eq!(map.user_of("natsgate.user.7.a.b"), None);
        // The hash is part of the wire contract between gateways: pinned.
        assert_eq!(user_bucket(""), 0x811c_9dc5 % USER_BUCKETS);
        assert_eq!(user_bucket("alice"), user_bucket("alice"));
        let spread: HashSet<u32> = (0..5000).map(|i| user_bucket(&format!("user-{i}"))).collect();
        assert!(spread.len() > USER_BUCKETS as usize * 9 / 10, "{} buckets used", spread.len());
    }

    #[test]
    fn mapping_is_injective_and_reversible() {
        let map = SubjectMap::new("p");
        let mut seen = HashSet::new();
        for ch in NASTY {
            let s = map.channel_subject(ch);
            assert!(seen.insert(s.clone()), "collision on {ch:?}");
            assert_eq!(map.channel_of(&s).as_deref(), Some(*ch));
        }
    }

    #[test]
    fn namespaces_group_under_one_wildcard() {
        let map = SubjectMap::new("p");
        assert_eq!(map.channel_subject("chat:room-1"), "p.ch.chat.chat_3Aroom-1");
        assert_eq!(map.channel_subject("$chat:x"), "p.ch.chat._24chat_3Ax");
        assert_eq!(map.channel_subject("news"), "p.ch._.news");
        assert_eq!(map.namespace_wildcard("chat"), "p.ch.chat.>");
        assert_eq!(namespace_of("a:b:c"), "a");
        assert_eq!(namespace_of("$a:b"), "a");
        assert_eq!(namespace_of("ab"), "");
    }

    #[test]
    fn meta_streams_never_collide_with_history_streams() {
        let map = SubjectMap::new("p.q");
        let namespaces: Vec<String> = NASTY
            .iter()
            .map(|s| s.to_string())
            .chain(["meta", "_meta", "x_meta", "a_5Fmeta"].map(String::from))
            .collect();
        let history: HashSet<String> = namespaces.iter().map(|ns| map.stream_name(ns)).collect();
        let meta: HashSet<String> = namespaces.iter().map(|ns| map.meta_stream_name(ns)).collect();
        assert_eq!(history.len(), namespaces.len());
        assert_eq!(meta.len(), namespaces.len(), "one meta stream per namespace");
        assert!(history.is_disjoint(&meta), "{:?}", history.intersection(&meta).collect::<Vec<_>>());
        assert_eq!(map.meta_stream_name("chat"), "p_q_chat_meta");
    }

    #[test]
    fn foreign_subjects_are_rejected() {
        let map = SubjectMap::new("p");
        for s in
            ["p.ch._", "p.ch._.a.b", "p.ch._.a_2", "p.ch._.a_2e", "p.ch._.a_41", "q.ch._.a", "p.ch.x.a", "p.ch._.a*"]
        {
            assert_eq!(map.channel_of(s), None, "{s}");
        }
    }
}
