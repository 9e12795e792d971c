//! Checks of the admin web interface options (`admin_*`), kept apart so the
//! feature's rules read in one place.

use super::{invalid, Config, ConfigError};

impl Config {
    /// With `admin` on: a password and a signing secret, unless
    /// `admin_insecure` (Centrifugo refuses logins without both; natsgate
    /// refuses to start, naming the missing variable). The prefix is a path:
    /// empty, or `/` followed by segments, stored without a trailing `/`.
    pub(super) fn validate_admin(&mut self) -> Result<(), ConfigError> {
        let set = |o: &Option<String>| o.as_deref().is_some_and(|v| !v.is_empty());
        if self.admin && !self.admin_insecure {
            if !set(&self.admin_password) {
                return Err(invalid("admin_password", "must be set with NATSGATE_ADMIN (or NATSGATE_ADMIN_INSECURE)"));
            }
            if !set(&self.admin_secret) {
                return Err(invalid("admin_secret", "must be set with NATSGATE_ADMIN (or NATSGATE_ADMIN_INSECURE)"));
            }
        }
        let prefix = self.admin_handler_prefix.trim_end_matches('/').to_string();
        let well_formed = prefix.is_empty()
            || (prefix.starts_with('/')
                && prefix[1..]
                    .split('/')
                    .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))));
        if !well_formed || prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(invalid("admin_handler_prefix", "must be empty or a path like /ops (letters, digits, -_.~)"));
        }
        self.admin_handler_prefix = prefix;
        Ok(())
    }
}
