//! Centrifugo's channel model: namespaces, name rules and permissions.
//!
//! Pure decisions, no I/O: the session asks "may this client do X on this
//! channel" and gets a protocol error code or a yes. Keeping them pure makes
//! the permission matrix testable as a table (see `tests` below).

pub mod options;

use std::collections::HashMap;

use crate::protocol::codes::ErrorCode;
pub use options::{parse_namespaces, validate_namespaces, ChannelOptions, ChannelRegex, Namespace, SubscriptionType};

/// Channels starting with this need a subscription token.
pub const PRIVATE_PREFIX: char = '$';
/// `name#42,43`: the users after the last `#` may subscribe.
pub const USER_BOUNDARY: char = '#';
pub const USER_SEPARATOR: char = ',';

/// The namespace of a channel: the part before the first `:`, after an
/// optional leading private prefix `$`; empty when there is no `:`.
pub fn namespace_of(channel: &str) -> &str {
    let body = channel.strip_prefix(PRIVATE_PREFIX).unwrap_or(channel);
    match body.find(':') {
        Some(i) => &body[..i],
        None => "",
    }
}

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor<'a> {
    pub user: &'a str,
    /// Already subscribed to the channel in question.
    pub subscribed: bool,
}

impl Actor<'_> {
    fn anonymous(&self) -> bool {
        self.user.is_empty()
    }
}

/// The channel rules of this gateway, built once by configuration
/// validation (each `channel_regex` was compiled when it was read; cloning
/// the rules shares the compiled regexes).
#[derive(Clone, Debug)]
pub struct ChannelRules {
    top: ChannelOptions,
    namespaces: HashMap<String, ChannelOptions>,
    max_length: usize,
}

/// Channel names longer than this are refused unless configured otherwise
/// (`channel_max_length`, Centrifugo's default).
pub const DEFAULT_MAX_LENGTH: usize = 255;

/// The rules of the default options: no namespaces, nothing allowed.
impl Default for ChannelRules {
    fn default() -> Self {
        ChannelRules { top: ChannelOptions::default(), namespaces: HashMap::new(), max_length: DEFAULT_MAX_LENGTH }
    }
}

/// A channel looked up in the rules.
pub struct Resolved<'a> {
    pub options: &'a ChannelOptions,
    pub private: bool,
    /// For user-limited channels (when the namespace allows them): the users.
    pub allowed_users: Option<Vec<&'a str>>,
}

impl ChannelRules {
    pub fn new(
        top: ChannelOptions,
        namespaces: Vec<(String, ChannelOptions)>,
        max_length: usize,
    ) -> Result<Self, String> {
        top.validate()?;
        let top = top.normalized();
        let mut map = HashMap::new();
        for (name, options) in namespaces {
            options.validate().map_err(|e| format!("namespace {name:?}: {e}"))?;
            map.insert(name, options.normalized());
        }
        Ok(ChannelRules { top, namespaces: map, max_length })
    }

    /// Rules for one namespace ("" for the top level), if it exists.
    pub fn namespace(&self, name: &str) -> Option<&ChannelOptions> {
        if name.is_empty() {
            Some(&self.top)
        } else {
            self.namespaces.get(name)
        }
    }

    pub fn namespaces(&self) -> impl Iterator<Item = (&str, &ChannelOptions)> {
        std::iter::once(("", &self.top)).chain(self.namespaces.iter().map(|(n, ns)| (n.as_str(), ns)))
    }

    /// Finds a channel's namespace and checks its name: unknown namespace
    /// 102; too long or not matching the name rules 107.
    pub fn resolve<'a>(&'a self, channel: &'a str) -> Result<Resolved<'a>, ErrorCode> {
        if channel.len() > self.max_length {
            return Err(ErrorCode::BAD_REQUEST);
        }
        let ns_name = namespace_of(channel);
        let ns = if ns_name.is_empty() {
            &self.top
        } else {
            self.namespaces.get(ns_name).ok_or(ErrorCode::UNKNOWN_CHANNEL)?
        };
        let body = channel.strip_prefix(PRIVATE_PREFIX).unwrap_or(channel);
        let rest = if ns_name.is_empty() { channel } else { &body[ns_name.len() + 1..] };
        let name_ok = match ns.channel_regex.get() {
            Some(re) => re.is_match(rest),
            None => channel.is_ascii(),
        };
        if !name_ok {
            return Err(ErrorCode::BAD_REQUEST);
        }
        let allowed_users = (ns.allow_user_limited_channels && channel.contains(USER_BOUNDARY))
            .then(|| channel.rsplit(USER_BOUNDARY).next().unwrap_or("").split(USER_SEPARATOR).collect());
        Ok(Resolved { options: ns, private: channel.starts_with(PRIVATE_PREFIX), allowed_users })
    }
}

impl Resolved<'_> {
    /// Client-side subscribe. A verified subscription token grants access on
    /// its own (the application signed it); private channels need one.
    pub fn can_subscribe(&self, actor: Actor, has_token: bool) -> Result<(), ErrorCode> {
        if has_token {
            return Ok(());
        }
        if self.private {
            return Err(ErrorCode::PERMISSION_DENIED);
        }
        if let Some(users) = &self.allowed_users {
            // An anonymous client never matches a user list.
            return if !actor.anonymous() && users.contains(&actor.user) {
                Ok(())
            } else {
                Err(ErrorCode::PERMISSION_DENIED)
            };
        }
        let o = self.options;
        if o.allow_subscribe_for_client && (!actor.anonymous() || o.allow_subscribe_for_anonymous) {
            Ok(())
        } else {
            Err(ErrorCode::PERMISSION_DENIED)
        }
    }

    pub fn can_publish(&self, actor: Actor) -> Result<(), ErrorCode> {
        let o = self.options;
        allowed(o.allow_publish_for_client, o.allow_publish_for_subscriber, o.allow_publish_for_anonymous, actor)
    }

    /// Presence and presence_stats: 108 when presence is off for the channel.
    pub fn can_presence(&self, actor: Actor) -> Result<(), ErrorCode> {
        let o = self.options;
        if !o.presence {
            return Err(ErrorCode::NOT_AVAILABLE);
        }
        allowed(o.allow_presence_for_client, o.allow_presence_for_subscriber, o.allow_presence_for_anonymous, actor)
    }

    /// History: 108 when the channel keeps no history.
    pub fn can_history(&self, actor: Actor) -> Result<(), ErrorCode> {
        let o = self.options;
        if !o.history_enabled() {
            return Err(ErrorCode::NOT_AVAILABLE);
        }
        allowed(o.allow_history_for_client, o.allow_history_for_subscriber, o.allow_history_for_anonymous, actor)
    }
}

/// What a client wants to do in a channel it may or may not be subscribed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Publish,
    Presence,
    History,
}

impl Resolved<'_> {
    pub fn allows(&self, access: Access, actor: Actor) -> Result<(), ErrorCode> {
        match access {
            Access::Publish => self.can_publish(actor),
            Access::Presence => self.can_presence(actor),
            Access::History => self.can_history(actor),
        }
    }
}

/// Centrifugo's rule for publish, presence and history: allowed for clients,
/// or for subscribers; anonymous clients additionally need the anonymous flag.
pub(crate) fn allowed(
    for_client: bool,
    for_subscriber: bool,
    for_anonymous: bool,
    actor: Actor,
) -> Result<(), ErrorCode> {
    let who_ok = !actor.anonymous() || for_anonymous;
    if who_ok && (for_client || (for_subscriber && actor.subscribed)) {
        Ok(())
    } else {
        Err(ErrorCode::PERMISSION_DENIED)
    }
}

#[cfg(test)]
mod tests;
