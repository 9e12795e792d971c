//! Cache recovery (`force_recovery_mode: "cache"`): a recovering subscription
//! gets only the channel's latest publication, as centrifuge's
//! `recoverCache` and `isCacheRecovered` decide (client.go, node.go).

use super::error::CommandError;
use super::Session;
use crate::broker::Query;
use crate::protocol::{Publication, SubscribeRequest, SubscribeResult};

impl Session {
    /// Recovers `channel` in cache mode. With `req.recover` (or `auto`, the
    /// namespace's `auto_cache_recover`) the reply holds the latest
    /// publication, unless the client already stands at it, and is
    /// `recovered` when that publication is the channel's top (held: not
    /// trimmed, not a hidden marker); otherwise it is the plain stream
    /// recovery path, which without `recover` only reports the position.
    ///
    /// As in centrifuge: the client's epoch must match exactly (an empty
    /// one is not "any"), and the reject-unrecovered flag is not consulted.
    pub(super) async fn recover_cache(
        &mut self,
        channel: &str,
        req: &SubscribeRequest,
        auto: bool,
    ) -> Result<SubscribeResult, CommandError> {
        if !req.recover && !auto {
            // No publications without `recover`: nothing to filter or delta.
            return self.recover(channel, req, &crate::hub::Delivery::default()).await;
        }
        let latest = Query { since: None, limit: 1, reverse: true };
        let page = self.app.broker.history(channel, latest).await?;
        let top = page.position;
        let latest = page.publications.into_iter().next();
        let same_state = req.offset > 0 && req.offset == top.offset && req.epoch == top.epoch;
        let (recovered, publications) = match latest {
            None => (same_state, Vec::new()),
            Some(publication) if publication.offset == top.offset && !same_state => {
                (true, vec![Publication::from(publication)])
            }
            Some(publication) => (publication.offset == top.offset, Vec::new()),
        };
        // Held live publications up to the top are not sent again: the one
        // at the top is in the reply, older ones are not wanted.
        self.set_activation(channel, top.offset);
        Ok(SubscribeResult {
            recoverable: true,
            was_recovering: true,
            recovered,
            epoch: top.epoch,
            // Recovered: the client's own offset, which the publication then
            // advances (centrifuge: "attach stream offset from request").
            offset: if recovered { req.offset } else { top.offset },
            publications,
            ..Default::default()
        })
    }
}
