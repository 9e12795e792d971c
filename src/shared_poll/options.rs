//! The `shared_poll` options of a namespace (Centrifugo v6.9 `SharedPollConfig`
//! in `internal/configtypes/namespace.go`), with centrifuge's defaults
//! (`shared_poll.go`, `keyed.go`).

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::channels::options::Lenient;

/// How the gateway tells a changed key from an unchanged one (Centrifugo's
/// `shared_poll.mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SharedPollMode {
    /// The default (`""` or `versionless`): the backend sends data only; a
    /// key changed when its data did, and the gateway numbers the versions.
    #[default]
    #[serde(alias = "")]
    Versionless,
    /// The backend sends a version per key (and an epoch); a key changed when
    /// its version grew. Needed by `shared_poll_publish`.
    Versioned,
}

/// A namespace's `shared_poll` object. Names and meanings are Centrifugo's.
#[serde_with::apply(
    bool => #[serde_as(as = "Lenient")],
    usize => #[serde_as(as = "Lenient")],
)]
#[serde_with::serde_as]
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SharedPollOptions {
    /// The proxy answering `shared_poll_refresh`: empty or `default` for
    /// `proxy_shared_poll_refresh_endpoint`, else a proxy of `proxies`.
    pub proxy_name: String,
    /// How often the tracked keys are polled (default 10 s).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
    /// Keys per backend request (default 1000).
    pub refresh_batch_size: usize,
    /// Keys one connection may track in a channel (default 5000).
    pub max_keys_per_connection: usize,
    /// `versionless` (default) or `versioned`.
    pub mode: SharedPollMode,
    /// How long a channel nobody tracks keeps its state before the gateway
    /// forgets it (default 1 s).
    #[serde(with = "humantime_serde")]
    pub channel_shutdown_delay: Option<Duration>,
    /// Accepted for compatibility: how long a key stays tracked after its
    /// signature expired (natsgate does not expire tracked keys yet).
    #[serde(with = "humantime_serde")]
    pub track_expired_extra_delay: Option<Duration>,
    /// `shared_poll_publish` may push data into the channels (versioned mode).
    pub publish_enabled: bool,
}

impl SharedPollOptions {
    /// Checks the options as Centrifugo's `validateChannelOptions` does.
    pub fn validate(&self) -> Result<(), String> {
        if self.publish_enabled && self.mode == SharedPollMode::Versionless {
            return Err(
                "shared_poll publish_enabled is incompatible with versionless mode (requires explicit versions)".into(),
            );
        }
        Ok(())
    }

    /// The polling period.
    pub fn interval(&self) -> Duration {
        self.refresh_interval.filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(10))
    }

    /// Keys per backend request.
    pub fn batch_size(&self) -> usize {
        if self.refresh_batch_size == 0 {
            1000
        } else {
            self.refresh_batch_size
        }
    }

    /// Keys one connection may track in a channel.
    pub fn max_keys(&self) -> usize {
        if self.max_keys_per_connection == 0 {
            5000
        } else {
            self.max_keys_per_connection
        }
    }

    /// How long an untracked channel's state is kept.
    pub fn shutdown_delay(&self) -> Duration {
        self.channel_shutdown_delay.filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(1))
    }
}
