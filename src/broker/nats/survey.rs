//! Surveys on NATS: a question published to every gateway with a reply
//! inbox, answers gathered until they stop coming.

use bytes::Bytes;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;

use super::{unavailable, NatsBroker};
use crate::broker::{Answer, BrokerError, SubscriptionGuard};

/// A survey waits this long for the first answer, and then for each next one.
const SURVEY_FIRST_ANSWER: Duration = Duration::from_millis(1000);
const SURVEY_QUIET: Duration = Duration::from_millis(100);
/// A survey never gathers more answers than this (bounded memory).
const SURVEY_MAX_ANSWERS: usize = 10_000;

impl NatsBroker {
    pub(super) async fn ask_all(&self, request: Bytes) -> Result<Vec<Bytes>, BrokerError> {
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await.map_err(unavailable)?;
        self.client.publish_with_reply(self.subjects.survey_subject(), inbox, request).await.map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)?;
        // Gateways do not know how many others there are: gather until the
        // answers stop coming.
        let mut out = Vec::new();
        let mut wait = SURVEY_FIRST_ANSWER;
        while out.len() < SURVEY_MAX_ANSWERS {
            match tokio::time::timeout(wait, answers.next()).await {
                Ok(Some(msg)) => out.push(msg.payload),
                Ok(None) | Err(_) => break,
            }
            wait = SURVEY_QUIET;
        }
        Ok(out)
    }

    pub(super) async fn answer_all(&self, handler: Arc<dyn Answer>) -> Result<SubscriptionGuard, BrokerError> {
        let client = self.client.clone();
        self.listen(self.subjects.survey_subject(), move |msg| {
            if let Some(reply) = msg.reply {
                let answer = handler.answer(&msg.payload);
                let client = client.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.publish(reply, answer).await {
                        tracing::warn!("cannot answer survey: {e}");
                    }
                });
            }
        })
        .await
    }
}
