//! Shutdown: one signal every connection watches, and a tracker to know
//! when the last connection task has finished.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells every connection to close with 3001 and stops new upgrades.
    pub fn begin(&self) {
        self.token.cancel();
        self.tracker.close();
    }

    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has begun.
    pub async fn draining(&self) {
        self.token.cancelled().await
    }

    /// Connection tasks are spawned on this tracker.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Waits for every connection task, at most `limit`; true if all ended.
    pub async fn wait(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.tracker.wait()).await.is_ok()
    }
}
