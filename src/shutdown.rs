//! Shutdown in two steps: draining (readiness false, no new connections,
//! clients closed one by one) and then forcing (close whatever is left), with
//! a tracker to know when the last connection task has finished.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub(crate) struct Shutdown {
    drain: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Readiness turns false and new WebSocket upgrades are refused.
    pub(crate) fn begin_drain(&self) {
        self.drain.cancel();
        self.tracker.close();
    }

    /// Every remaining connection closes with 3001.
    pub(crate) fn force(&self) {
        self.begin_drain();
        self.force.cancel();
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Resolves once draining has begun.
    pub(crate) async fn draining(&self) {
        self.drain.cancelled().await
    }

    /// Resolves once remaining connections must close.
    pub(crate) async fn forced(&self) {
        self.force.cancelled().await
    }

    /// Connection tasks are spawned on this tracker.
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Waits for every connection task, at most `limit`; true if all ended.
    pub(crate) async fn wait(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.tracker.wait()).await.is_ok()
    }
}
