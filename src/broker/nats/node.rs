//! Requests to one gateway on NATS: `<prefix>.node.<uid>`, answered by the
//! gateway of that unique id only (the emulation endpoint's route to the
//! gateway holding a session).

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use super::{unavailable, NatsBroker};
use crate::broker::{AnswerNode, BrokerError, SubscriptionGuard};

/// How long the asking gateway waits for the answer. The answering side
/// bounds its own work well below this (see `transport::emulation`).
const NODE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests a gateway answers at once; more are dropped (their senders time
/// out), so a flood cannot grow the answering tasks without bound.
const NODE_MAX_IN_FLIGHT: usize = 4096;

impl NatsBroker {
    pub(super) async fn ask_node(&self, node: &str, request: Bytes) -> Result<Option<Bytes>, BrokerError> {
        let Some(subject) = self.subjects.node_subject(node) else { return Ok(None) };
        let request = async_nats::Request::new().payload(request).timeout(Some(NODE_REQUEST_TIMEOUT));
        match self.client.send_request(subject, request).await {
            Ok(message) => Ok(Some(message.payload)),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub(super) async fn answer_as_node(
        &self,
        node: &str,
        handler: Arc<dyn AnswerNode>,
    ) -> Result<SubscriptionGuard, BrokerError> {
        let subject = self.subjects.node_subject(node).ok_or_else(|| unavailable("node id is not a plain token"))?;
        let client = self.client.clone();
        let in_flight = Arc::new(Semaphore::new(NODE_MAX_IN_FLIGHT));
        self.listen(subject, move |msg| {
            let Some(reply) = msg.reply else { return };
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                tracing::warn!("too many emulation requests in flight: one dropped");
                return;
            };
            let answer = handler.answer(msg.payload);
            let client = client.clone();
            tokio::spawn(async move {
                let answer = answer.await;
                if let Err(e) = client.publish(reply, answer).await {
                    tracing::debug!("cannot answer a node request: {e}");
                }
                drop(permit);
            });
        })
        .await
    }
}
