//! Checks the options together and builds what is derived from several of
//! them (the channel rules), once, when the configuration is read.

use super::{invalid, Config, ConfigError};
use crate::channels::{validate_namespaces, ChannelRules};

impl Config {
    /// Checks the options against each other and builds [`Config::rules`].
    /// Errors name the variable at fault.
    pub(super) fn validate(&mut self) -> Result<(), ConfigError> {
        self.channel
            .validate()
            .map_err(|e| ConfigError::Invalid { var: "top-level channel options".into(), problem: e })?;
        validate_namespaces(&self.namespaces).map_err(|e| invalid("namespaces", e))?;
        crate::map::presence::check_prefixes(&self.channel, &self.namespaces)
            .map_err(|e| ConfigError::Invalid { var: "top-level channel options".into(), problem: e })?;
        if self.channel_max_length == 0 || self.channel_max_length > 1024 {
            return Err(invalid("channel_max_length", "must be between 1 and 1024"));
        }
        let namespaces = self.namespaces.iter().map(|ns| (ns.name.clone(), ns.options.clone())).collect();
        self.rules = ChannelRules::new(self.channel.clone(), namespaces, self.channel_max_length)
            .map_err(|e| invalid("namespaces", e))?;
        self.validate_history_meta_ttl()?;
        self.validate_personal_channel()?;
        if self.nats_prefix.is_empty()
            || !self
                .nats_prefix
                .split('.')
                .all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(invalid("nats_prefix", "must be dot-separated tokens of letters, digits, '-' or '_'"));
        }
        if self.ping_interval.is_zero() {
            return Err(invalid("ping_interval", "must be positive"));
        }
        if self.pong_timeout >= self.ping_interval {
            return Err(invalid("pong_timeout", "must be shorter than NATSGATE_PING_INTERVAL"));
        }
        if self.client_queue_max_size < 1024 {
            return Err(invalid("client_queue_max_size", "must be at least 1024 bytes"));
        }
        if self.websocket_message_size_limit < 1024 {
            return Err(invalid("websocket_message_size_limit", "must be at least 1024 bytes"));
        }
        if self.client_channel_limit == 0 {
            return Err(invalid("client_channel_limit", "must be positive"));
        }
        if self.drain_period >= self.shutdown_timeout {
            return Err(invalid("drain_period", "must be shorter than NATSGATE_SHUTDOWN_TIMEOUT"));
        }
        if self.api_max_body_size < 1024 {
            return Err(invalid("api_max_body_size", "must be at least 1024 bytes"));
        }
        self.validate_grpc_api()?;
        self.validate_admin()?;
        // Client TLS of proxies and JWKS: certificates readable, names valid.
        self.proxy_http_tls.client_config().map_err(|e| invalid("proxy_http_tls", e))?;
        if self.proxy_grpc_tls.enabled {
            self.proxy_grpc_tls.client_config().map_err(|e| invalid("proxy_grpc_tls", e))?;
        }
        // Proxy endpoints: valid URLs, named proxies that exist.
        crate::proxy::Proxies::from_config(self).map_err(|e| {
            let (var, problem) = e.split_once(": ").unwrap_or(("proxy_connect_endpoint", e.as_str()));
            invalid(var, problem)
        })?;
        self.validate_security()
    }

    /// Secured NATS and client TLS: one auth method, pairs complete.
    fn validate_security(&self) -> Result<(), ConfigError> {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.is_empty());
        let methods = [
            set(&self.nats_credentials_file),
            set(&self.nats_nkey),
            set(&self.nats_token),
            set(&self.nats_username) || set(&self.nats_password),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            return Err(invalid(
                "nats_credentials_file",
                "choose one NATS authentication: NATSGATE_NATS_CREDENTIALS_FILE, NATSGATE_NATS_NKEY, \
                 NATSGATE_NATS_TOKEN or NATSGATE_NATS_USERNAME with NATSGATE_NATS_PASSWORD",
            ));
        }
        if set(&self.nats_username) != set(&self.nats_password) {
            return Err(invalid("nats_username", "needs NATSGATE_NATS_PASSWORD, and the other way round"));
        }
        if set(&self.nats_tls_cert_pem) != set(&self.nats_tls_key_pem) {
            return Err(invalid("nats_tls_cert_pem", "needs NATSGATE_NATS_TLS_KEY_PEM, and the other way round"));
        }
        if !(1..=5).contains(&self.nats_history_replicas) {
            return Err(invalid("nats_history_replicas", "must be between 1 and 5 (JetStream's limit)"));
        }
        if self.tls && !(set(&self.tls_cert) && set(&self.tls_key)) {
            return Err(invalid("tls", "needs NATSGATE_TLS_CERT and NATSGATE_TLS_KEY"));
        }
        // Centrifugo ignores them without `tls`; serving plain text to an
        // operator who gave certificates would be a silent downgrade.
        if !self.tls && (set(&self.tls_cert) || set(&self.tls_key)) {
            return Err(invalid("tls_cert", "is set but NATSGATE_TLS is not: set NATSGATE_TLS=true to serve TLS"));
        }
        Ok(())
    }

    /// A position must outlive the publications it points after, or a
    /// client that missed nothing would be told its position is gone.
    fn validate_history_meta_ttl(&self) -> Result<(), ConfigError> {
        if self.history_meta_ttl.is_zero() {
            return Err(invalid("history_meta_ttl", "must be positive"));
        }
        let longest =
            self.rules.namespaces().filter_map(|(name, o)| Some((name, o.history_ttl?))).max_by_key(|(_, t)| *t);
        if let Some((name, ttl)) = longest.filter(|(_, t)| *t > self.history_meta_ttl) {
            let owner =
                if name.is_empty() { "NATSGATE_HISTORY_TTL".to_string() } else { format!("namespace `{name}`") };
            return Err(invalid(
                "history_meta_ttl",
                format!("must be at least every history_ttl ({owner} has {})", humantime::format_duration(ttl)),
            ));
        }
        Ok(())
    }

    /// The personal channel's namespace must exist and, for single
    /// connections, keep presence (Centrifugo v6's config validation; with
    /// the feature off or no namespace, the top level is the one checked).
    fn validate_personal_channel(&self) -> Result<(), ConfigError> {
        let name = &self.user_personal_channel_namespace;
        let options = if self.user_subscribe_to_personal && !name.is_empty() {
            match self.namespaces.iter().find(|ns| &ns.name == name) {
                Some(ns) => &ns.options,
                None => {
                    return Err(invalid(
                        "user_personal_channel_namespace",
                        format!("namespace for user personal channel not found: {name}"),
                    ))
                }
            }
        } else {
            &self.channel
        };
        if self.user_personal_single_connection && !options.presence {
            let owner = if self.user_subscribe_to_personal && !name.is_empty() {
                format!("namespace `{name}`")
            } else {
                "the top level (NATSGATE_PRESENCE)".to_string()
            };
            return Err(invalid(
                "user_personal_single_connection",
                format!("needs presence in the personal channel's namespace: enable it for {owner}"),
            ));
        }
        Ok(())
    }

    fn validate_grpc_api(&self) -> Result<(), ConfigError> {
        if self.grpc_api_tls_cert.is_some() != self.grpc_api_tls_key.is_some() {
            return Err(invalid("grpc_api_tls_cert", "needs NATSGATE_GRPC_API_TLS_KEY, and the other way round"));
        }
        // Unlike Centrifugo, which leaves a keyless GRPC API open, natsgate
        // refuses to start one: the HTTP API without a key refuses every call.
        if self.grpc_api && self.grpc_api_key.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("grpc_api_key", "must be set when NATSGATE_GRPC_API is on"));
        }
        Ok(())
    }
}
