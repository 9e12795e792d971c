//! Channel options: the per-namespace rules (Centrifugo's names and meanings).

use serde::Deserialize;
use std::time::Duration;

/// Options of a namespace, or of channels without one (the top level).
/// Field names are Centrifugo's, so a Centrifugo namespace config carries over.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelOptions {
    /// Authenticated clients may subscribe on their own.
    pub allow_subscribe_for_client: bool,
    /// Anonymous clients may subscribe on their own.
    pub allow_subscribe_for_anonymous: bool,
    /// Authenticated clients may publish.
    pub allow_publish_for_client: bool,
    /// Subscribers of the channel may publish.
    pub allow_publish_for_subscriber: bool,
    /// Anonymous clients may publish (with one of the two above).
    pub allow_publish_for_anonymous: bool,
    pub allow_presence_for_client: bool,
    pub allow_presence_for_subscriber: bool,
    pub allow_presence_for_anonymous: bool,
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    pub allow_history_for_anonymous: bool,
    /// `name#42,43` may be subscribed only by users 42 and 43.
    pub allow_user_limited_channels: bool,
    /// A regular expression the channel name (without namespace) must match.
    pub channel_regex: String,
    /// Keep presence information for channels.
    pub presence: bool,
    /// Send join and leave pushes (needs presence).
    pub join_leave: bool,
    /// Send join and leave pushes to every subscriber without asking.
    pub force_push_join_leave: bool,
    /// Publications kept per channel (needs history_ttl).
    pub history_size: u32,
    /// How long publications are kept.
    #[serde(with = "humantime_serde")]
    pub history_ttl: Option<Duration>,
    /// Recover every subscription on reconnect.
    pub force_recovery: bool,
    /// Let clients ask for recovery.
    pub allow_recovery: bool,
    /// Detect gaps on every subscription.
    pub force_positioning: bool,
    /// Let clients ask for positioning.
    pub allow_positioning: bool,
}

/// Namespace names: letters, digits, `-` and `_`, at least two characters.
pub fn valid_namespace_name(name: &str) -> bool {
    name.len() >= 2 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses the `namespaces` option: a JSON array of objects, each with a
/// `name` and channel options. Errors name the namespace and the problem.
pub fn parse_namespaces(json: &str) -> Result<Vec<(String, ChannelOptions)>, String> {
    let list: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON array of namespace objects: {e}"))?;
    let mut out: Vec<(String, ChannelOptions)> = Vec::with_capacity(list.len());
    for mut entry in list {
        let name = match entry.remove("name") {
            Some(serde_json::Value::String(name)) => name,
            _ => return Err("every namespace needs a string `name`".into()),
        };
        if !valid_namespace_name(&name) {
            return Err(format!("invalid namespace name {name:?}: use at least two of [-a-zA-Z0-9_]"));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("namespace {name:?} is defined twice"));
        }
        let options: ChannelOptions =
            serde_json::from_value(serde_json::Value::Object(entry)).map_err(|e| format!("namespace {name:?}: {e}"))?;
        options.validate().map_err(|e| format!("namespace {name:?}: {e}"))?;
        out.push((name, options));
    }
    Ok(out)
}

impl ChannelOptions {
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && self.history_ttl.is_some_and(|t| !t.is_zero())
    }

    /// Checks the options make sense together; the message names the option.
    pub fn validate(&self) -> Result<(), String> {
        if (self.history_size > 0) != self.history_ttl.is_some_and(|t| !t.is_zero()) {
            return Err("history_size and history_ttl must be set together".into());
        }
        if (self.force_recovery || self.allow_recovery) && !self.history_enabled() {
            return Err("force_recovery and allow_recovery need history_size and history_ttl".into());
        }
        if (self.force_positioning || self.allow_positioning) && !self.history_enabled() {
            return Err("force_positioning and allow_positioning need history_size and history_ttl".into());
        }
        if self.join_leave && !self.presence {
            return Err("join_leave needs presence".into());
        }
        if self.force_push_join_leave && !self.join_leave {
            return Err("force_push_join_leave needs join_leave".into());
        }
        if !self.channel_regex.is_empty() {
            regex::Regex::new(&self.channel_regex).map_err(|e| format!("channel_regex is not a valid regex: {e}"))?;
        }
        Ok(())
    }
}
