//! This gateway's connections by user, and the broker subscriptions of the
//! user buckets they need (server API commands addressed to a user).

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::OnceCell;

use super::{ClientHandle, Hub};
use crate::broker::subject::user_bucket;
use crate::broker::{BrokerError, DeliverUserCommand, SubscriptionGuard};
use crate::user_command::UserCommand;

/// This gateway's connections by user, and the user buckets they need.
#[derive(Default)]
pub(super) struct Users {
    /// user -> that user's connections here.
    by_name: HashMap<String, HashMap<u64, Arc<ClientHandle>>>,
    /// User bucket -> (users here in it, its broker subscription). The
    /// subscription lives while the bucket has a local user.
    buckets: HashMap<u32, (usize, Arc<OnceCell<SubscriptionGuard>>)>,
}

impl Hub {
    /// Registers an authenticated connection. Returns once user commands
    /// for the user reach this gateway: at once when the user's
    /// bucket is already subscribed, after one broker round trip otherwise.
    pub async fn add_client(self: &Arc<Self>, client: &Arc<ClientHandle>) -> Result<(), BrokerError> {
        let bucket = user_bucket(&client.user);
        let cell = {
            let mut users = self.users.write();
            let Users { by_name, buckets } = &mut *users;
            let (users_in_bucket, cell) = buckets.entry(bucket).or_insert_with(|| (0, Arc::new(OnceCell::new())));
            if !by_name.contains_key(&client.user) {
                *users_in_bucket += 1;
            }
            by_name.entry(client.user.clone()).or_default().insert(client.key, client.clone());
            cell.clone()
        };
        if cell.initialized() {
            return Ok(());
        }
        let sink: Arc<dyn DeliverUserCommand> = self.clone();
        if let Err(e) = cell.get_or_try_init(|| self.broker.subscribe_user_bucket(bucket, sink)).await {
            self.remove_client(client, []);
            return Err(e);
        }
        Ok(())
    }

    /// Forgets a connection and all its subscriptions.
    pub fn remove_client(&self, client: &ClientHandle, channels: impl IntoIterator<Item = String>) {
        for channel in channels {
            self.unsubscribe(&channel, client.key);
        }
        let mut users = self.users.write();
        let Users { by_name, buckets } = &mut *users;
        let Some(connections) = by_name.get_mut(&client.user) else { return };
        connections.remove(&client.key);
        if connections.is_empty() {
            by_name.remove(&client.user);
            let bucket = user_bucket(&client.user);
            if let Some(entry) = buckets.get_mut(&bucket) {
                entry.0 -= 1;
                if entry.0 == 0 {
                    // Dropping the guard unsubscribes the bucket.
                    buckets.remove(&bucket);
                }
            }
        }
    }

    /// Connections of a user on this gateway.
    pub fn user_clients(&self, user: &str) -> Vec<Arc<ClientHandle>> {
        self.users.read().by_name.get(user).map(|c| c.values().cloned().collect()).unwrap_or_default()
    }

    /// Every connection on this gateway.
    pub fn all_clients(&self) -> Vec<Arc<ClientHandle>> {
        self.users.read().by_name.values().flat_map(|c| c.values().cloned()).collect()
    }

    pub fn num_clients(&self) -> usize {
        self.users.read().by_name.values().map(HashMap::len).sum()
    }

    pub fn num_users(&self) -> usize {
        self.users.read().by_name.len()
    }
}

impl DeliverUserCommand for Hub {
    fn deliver_user_command(&self, user: &str, payload: Bytes) {
        let command: UserCommand = match serde_json::from_slice(&payload) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("ignoring malformed user command: {e}");
                return;
            }
        };
        for client in self.user_clients(user) {
            if command.targets(&client.client_id) && client.commands.try_send(Box::new(command.clone())).is_err() {
                tracing::warn!(client = %client.client_id, "user command queue full: command dropped");
            }
        }
    }
}
