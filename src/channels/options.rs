//! Channel options: the per-namespace rules (Centrifugo's names and meanings),
//! declared once for the top level and for every namespace.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_with::{json::JsonString, DisplayFromStr, PickFirst, Same};
use std::time::Duration;

/// Reads a number or boolean given either as itself (a JSON file) or as
/// text (a `NATSGATE_*` variable, which `envy` always hands over as a
/// string, also inside `#[serde(flatten)]`).
pub type Lenient = PickFirst<(Same, DisplayFromStr)>;

/// Options of a namespace, or of channels without one (the top level, where
/// they are flattened into `Config`). Field names are Centrifugo's, so a
/// Centrifugo namespace config carries over (Centrifugo embeds one
/// `ChannelOptions` type the same way: `internal/rule/namespace.go`).
// Every number and boolean reads as itself or as text.
#[serde_with::apply(
    bool => #[serde_as(as = "Lenient")],
    u32 => #[serde_as(as = "Lenient")],
)]
#[serde_with::serde_as]
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
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
    /// Authenticated clients may ask for presence.
    pub allow_presence_for_client: bool,
    /// Subscribers may ask for presence.
    pub allow_presence_for_subscriber: bool,
    /// Anonymous clients may ask for presence (with one of the two above).
    pub allow_presence_for_anonymous: bool,
    /// Authenticated clients may ask for history.
    pub allow_history_for_client: bool,
    /// Subscribers may ask for history.
    pub allow_history_for_subscriber: bool,
    /// Anonymous clients may ask for history (with one of the two above).
    pub allow_history_for_anonymous: bool,
    /// `name#42,43` may be subscribed only by users 42 and 43.
    pub allow_user_limited_channels: bool,
    /// A regular expression the channel name (without namespace) must match;
    /// compiled when the configuration is read.
    #[serde_as(as = "DisplayFromStr")]
    pub channel_regex: ChannelRegex,
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
    // Proxy to the application backend (issue #16).
    /// Subscriptions without a token are decided by the subscribe proxy.
    pub proxy_subscribe: bool,
    /// Client publications go through the publish proxy.
    pub proxy_publish: bool,
    /// Subscriptions are extended by the sub_refresh proxy when they expire.
    pub proxy_sub_refresh: bool,
    /// With `granular_proxy_mode`: the named proxy deciding subscriptions.
    pub subscribe_proxy_name: String,
    /// With `granular_proxy_mode`: the named proxy for publications.
    pub publish_proxy_name: String,
    /// With `granular_proxy_mode`: the named proxy extending subscriptions.
    pub sub_refresh_proxy_name: String,
    // Cache recovery (issue #20), Centrifugo v6's names.
    /// How subscriptions that recover do it: `stream` (the default: every
    /// missed publication) or `cache` (only the latest publication).
    pub force_recovery_mode: RecoveryMode,
    /// With `force_recovery` and `force_recovery_mode: cache`: every
    /// subscribe (server-side ones too) gets the latest publication without
    /// asking for recovery.
    pub auto_cache_recover: bool,
    // Map subscriptions (issue #20, Centrifugo v6.8+; see `crate::map`).
    /// `stream` (default: publications with history) or `map` (key-value state).
    pub subscription_type: SubscriptionType,
    /// With `subscription_type: map`: the map's options (a JSON object; as a
    /// variable, its JSON text).
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub map: crate::map::options::MapOptions,
    // Delta compression and tags filter (issue #20, Centrifugo v6's names).
    /// Delta types subscribers may ask for (`delta` in the subscribe
    /// request): only `fossil` exists; empty turns delta compression off. A
    /// JSON array, or names separated by spaces or commas.
    #[serde(deserialize_with = "crate::proxy::options::names")]
    pub allowed_delta_types: Vec<String>,
    /// Every publication in these channels is published with the `delta`
    /// flag (as the API's `publish` with `delta: true`).
    pub delta_publish: bool,
    /// Clients may give a tags filter (`tf`) when subscribing.
    pub allow_tags_filter: bool,
    // Presence-style map channels (issue #20, Centrifugo v6.8+; see `crate::map::presence`).
    /// A subscriber of a channel `c` here is kept, keyed by its client id
    /// with its client info, in the `map_clients` channel `<prefix>c`.
    pub map_clients_presence_channel_prefix: String,
    /// A subscriber of a channel `c` here is kept, keyed by its user id, in
    /// the `map_users` channel `<prefix>c` (anonymous clients are not).
    pub map_users_presence_channel_prefix: String,
    // Shared poll subscriptions (issue #20, Centrifugo v6.9; see `crate::shared_poll`).
    /// With `subscription_type: shared_poll`: the namespace's `shared_poll`
    /// object (a JSON object; as a variable, its JSON text).
    #[serde_as(as = "PickFirst<(Same, JsonString)>")]
    pub shared_poll: crate::shared_poll::options::SharedPollOptions,
}

/// `force_recovery_mode`: what a recovering subscription gets (centrifuge's
/// `RecoveryMode`; Centrifugo v6 `configtypes.ChannelOptions.GetRecoveryMode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Every publication missed since the client's position, in order.
    #[default]
    #[serde(rename = "stream", alias = "")]
    Stream,
    /// Only the channel's latest publication (the channel is a cache of its
    /// last state).
    #[serde(rename = "cache")]
    Cache,
}

/// What subscribing to a namespace's channels means (Centrifugo's
/// `subscription_type`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionType {
    /// Publications with optional history (Centrifugo's default).
    #[default]
    #[serde(alias = "")]
    Stream,
    /// Key-value state with a change stream (map subscriptions).
    Map,
    /// A map whose keys are the client ids of the subscribers of the
    /// channels whose namespace names it in `map_clients_presence_channel_prefix`.
    #[serde(rename = "map_clients")]
    MapClients,
    /// A map whose keys are the user ids of those subscribers
    /// (`map_users_presence_channel_prefix`).
    #[serde(rename = "map_users")]
    MapUsers,
    /// Keys whose state the gateway polls from the backend for the clients
    /// tracking them (shared poll subscriptions, `crate::shared_poll`).
    #[serde(rename = "shared_poll")]
    SharedPoll,
}

impl SubscriptionType {
    /// Any of the map kinds: key-value state, subscribed with `type` 1..=3.
    pub fn is_map(self) -> bool {
        matches!(self, SubscriptionType::Map | SubscriptionType::MapClients | SubscriptionType::MapUsers)
    }

    /// The subscribe request `type` of this kind (centrifuge's `SubscriptionType`).
    pub fn request_type(self) -> i32 {
        match self {
            SubscriptionType::Stream => 0,
            SubscriptionType::Map => 1,
            SubscriptionType::MapClients => 2,
            SubscriptionType::MapUsers => 3,
            SubscriptionType::SharedPoll => 4,
        }
    }
}

/// `channel_regex`, compiled once; empty text means no rule.
#[derive(Clone, Debug, Default)]
pub struct ChannelRegex(Option<Regex>);

impl ChannelRegex {
    /// Whether `name` passes: always when there is no rule.
    pub fn get(&self) -> Option<&Regex> {
        self.0.as_ref()
    }
}

impl std::str::FromStr for ChannelRegex {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "" => Ok(ChannelRegex(None)),
            re => Regex::new(re).map(|re| ChannelRegex(Some(re))).map_err(|e| format!("not a valid regex: {e}")),
        }
    }
}

impl std::fmt::Display for ChannelRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_ref().map_or("", Regex::as_str))
    }
}

/// Two rules are equal when their sources are.
impl PartialEq for ChannelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

/// One entry of the `namespaces` option: a `name` and, beside it, the
/// channel options of that namespace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Namespace {
    pub name: String,
    #[serde(flatten)]
    pub options: ChannelOptions,
}

/// By hand rather than derived: `#[serde(flatten)]` would silently accept
/// unknown keys, and a misspelt option inside a namespace must be an error
/// that names the namespace.
impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut entry = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let name = match entry.remove("name") {
            Some(serde_json::Value::String(name)) => name,
            _ => return Err(D::Error::custom("every namespace needs a string `name`")),
        };
        if !valid_namespace_name(&name) {
            return Err(D::Error::custom(format!(
                "invalid namespace name {name:?}: use at least two of [-a-zA-Z0-9_]"
            )));
        }
        let options = serde_path_to_error::deserialize(serde_json::Value::Object(entry)).map_err(|e| {
            let at = e.path().to_string();
            let at = if at == "." { String::new() } else { format!("{at}: ") };
            D::Error::custom(format!("namespace {name:?}: {at}{}", e.into_inner()))
        })?;
        Ok(Namespace { name, options })
    }
}

/// Namespace names: letters, digits, `-` and `_`, at least two characters.
pub fn valid_namespace_name(name: &str) -> bool {
    name.len() >= 2 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a namespace list: no name twice, each namespace's options
/// consistent. Errors name the namespace and the problem.
pub fn validate_namespaces(list: &[Namespace]) -> Result<(), String> {
    for (i, ns) in list.iter().enumerate() {
        if list[..i].iter().any(|other| other.name == ns.name) {
            return Err(format!("namespace {:?} is defined twice", ns.name));
        }
        ns.options.validate().map_err(|e| format!("namespace {:?}: {e}", ns.name))?;
    }
    crate::map::presence::validate_prefixes(list)?;
    Ok(())
}

/// Parses and checks a `namespaces` JSON array, as the configuration does.
pub fn parse_namespaces(json: &str) -> Result<Vec<(String, ChannelOptions)>, String> {
    let list: Vec<Namespace> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON array of namespace objects: {e}"))?;
    validate_namespaces(&list)?;
    Ok(list.into_iter().map(|ns| (ns.name, ns.options)).collect())
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
        // Centrifugo's validateChannelOptions.
        if self.auto_cache_recover && !(self.force_recovery && self.force_recovery_mode == RecoveryMode::Cache) {
            return Err("auto_cache_recover needs force_recovery and force_recovery_mode \"cache\"".into());
        }
        if self.subscription_type.is_map() {
            self.map.validate()?;
            crate::map::presence::validate(self)?;
        } else if self.map != crate::map::options::MapOptions::default() {
            return Err("map options need subscription_type map".into());
        }
        if self.subscription_type == SubscriptionType::SharedPoll {
            self.shared_poll.validate()?;
        } else if self.shared_poll != crate::shared_poll::options::SharedPollOptions::default() {
            return Err("shared_poll options need subscription_type shared_poll".into());
        }
        // Centrifugo's config validation: the only delta type is fossil.
        if let Some(unknown) = self.allowed_delta_types.iter().find(|t| *t != "fossil") {
            return Err(format!("unknown allowed delta type: \"{unknown}\" (allowed_delta_types)"));
        }
        Ok(())
    }

    /// The options as the gateway applies them: a map namespace in a stream
    /// mode keeps its changes as channel history (`map.stream_size`,
    /// `map.stream_ttl`), which recovery then reads.
    pub fn normalized(mut self) -> Self {
        if self.subscription_type.is_map() {
            let (size, ttl) = self.map.stream().unzip();
            self.history_size = size.unwrap_or(0);
            self.history_ttl = ttl;
        }
        self
    }
}
