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
        if self.channel_max_length == 0 || self.channel_max_length > 1024 {
            return Err(invalid("channel_max_length", "must be between 1 and 1024"));
        }
        let namespaces = self.namespaces.iter().map(|ns| (ns.name.clone(), ns.options.clone())).collect();
        self.rules = ChannelRules::new(self.channel.clone(), namespaces, self.channel_max_length)
            .map_err(|e| invalid("namespaces", e))?;
        self.validate_history_meta_ttl()?;
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
        self.validate_grpc_api()
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
