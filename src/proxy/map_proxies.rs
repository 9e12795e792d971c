//! The map channel proxies (Centrifugo v6.8+, `internal/proxy/map_publish*.go`
//! and `map_remove*.go`): a map namespace with `map.publish_proxy_enabled`
//! (`map.remove_proxy_enabled`) sends each client key write (removal) to the
//! backend, which authorizes it and may change the key, data and tags.
//!
//! Endpoints: `proxy_map_publish_endpoint`/`proxy_map_remove_endpoint`, or
//! in granular proxy mode the `proxies` entry named by
//! `map.publish_proxy_name`/`map.remove_proxy_name` (Centrifugo v6's
//! `channel.proxy.map_publish`/`map_remove` and named proxies).

use std::sync::Arc;
use std::time::Duration;

use super::{Proxies, Proxy};
use crate::channels::ChannelOptions;
use crate::config::Config;

/// Which of the two map proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapEvent {
    Publish,
    Remove,
}

/// The namespace options of every channel rule (top level and namespaces).
fn all_channel_options(config: &Config) -> impl Iterator<Item = &ChannelOptions> {
    std::iter::once(&config.channel).chain(config.namespaces.iter().map(|n| &n.options))
}

impl Proxies {
    /// Granular mode: the named proxies map namespaces enable; a name that
    /// is not in `proxies` is an error.
    pub(super) fn pick_map_proxies(
        &mut self,
        config: &Config,
        pick: impl Fn(&str, &str) -> Result<Option<Arc<Proxy>>, String>,
    ) -> Result<(), String> {
        for o in all_channel_options(config) {
            let m = &o.map;
            let wanted = [
                (m.publish_proxy_enabled, &m.publish_proxy_name, "map.publish_proxy_name", MapEvent::Publish),
                (m.remove_proxy_enabled, &m.remove_proxy_name, "map.remove_proxy_name", MapEvent::Remove),
            ];
            for (enabled, name, option, event) in wanted {
                if !enabled {
                    continue;
                }
                let proxy =
                    pick(option, name)?.ok_or_else(|| format!("{option} is required with the proxy enabled"))?;
                self.map_proxies_mut(event).insert(name.clone(), proxy);
            }
        }
        Ok(())
    }

    /// Non-granular mode: the two endpoints, when set.
    pub(super) fn open_map_proxies(
        &mut self,
        config: &Config,
        open: impl Fn(&str, &str, Duration) -> Result<Option<Arc<Proxy>>, String>,
    ) -> Result<(), String> {
        let endpoints = [
            ("proxy_map_publish_endpoint", &config.proxy_map_publish_endpoint, config.proxy_map_publish_timeout),
            ("proxy_map_remove_endpoint", &config.proxy_map_remove_endpoint, config.proxy_map_remove_timeout),
        ];
        for ((option, endpoint, timeout), event) in endpoints.into_iter().zip([MapEvent::Publish, MapEvent::Remove]) {
            if let Some(proxy) = open(option, endpoint, timeout)? {
                self.map_proxies_mut(event).insert(String::new(), proxy);
            }
        }
        Ok(())
    }

    fn map_proxies_mut(&mut self, event: MapEvent) -> &mut std::collections::HashMap<String, Arc<Proxy>> {
        match event {
            MapEvent::Publish => &mut self.map_publish,
            MapEvent::Remove => &mut self.map_remove,
        }
    }

    /// The map proxy a channel uses for `event`: `None` when its namespace
    /// does not enable one; `Some(None)` when it does but no endpoint is
    /// configured (Centrifugo then answers 108, not available).
    pub(crate) fn map_proxy_for(
        &self,
        o: &ChannelOptions,
        event: MapEvent,
        granular: bool,
    ) -> Option<Option<Arc<Proxy>>> {
        let m = &o.map;
        let (enabled, name, proxies) = match event {
            MapEvent::Publish => (m.publish_proxy_enabled, &m.publish_proxy_name, &self.map_publish),
            MapEvent::Remove => (m.remove_proxy_enabled, &m.remove_proxy_name, &self.map_remove),
        };
        if !enabled {
            return None;
        }
        let key = if granular { name.as_str() } else { "" };
        Some(proxies.get(key).cloned())
    }
}
