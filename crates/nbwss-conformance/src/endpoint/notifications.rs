//! The notifications an endpoint must acknowledge: R-NOTIF-1 to 5, with R-ENV-8 and R-LIMIT-2 on
//! notifications too.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{EndpointRun, Wait};
use crate::checks::Incoming;
use crate::messages::{self, Outgoing};
use crate::peer::{describe_end, Peer};
use crate::rule;

impl EndpointRun {
    /// Sends `message` and waits for its acknowledgement; records R-NOTIF-1 and R-NOTIF-2.
    async fn acknowledged(
        &mut self,
        peer: &mut Peer,
        message: &Outgoing,
        wait: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        peer.send_text(message.text.clone()).await?;
        self.sent_ids.push(message.id.clone());
        let id = message.id.clone();
        let outcome = self
            .next_message(peer, started + wait, |incoming| {
                incoming.is("NOTIFICATION", "RESPONSE") && incoming.id() == Some(&id)
            })
            .await;
        match outcome {
            Wait::Found(_) => {
                self.checklist.observe(&rule::NOTIF_1, "notifications acknowledged in time, by id");
                Ok(started.elapsed())
            }
            Wait::Ended(event) => {
                let reason = format!(
                    "the endpoint {} instead of acknowledging notification {id}",
                    describe_end(&event)
                );
                self.checklist.fail(&rule::NOTIF_1, reason.clone());
                Err(reason)
            }
            Wait::Timeout => {
                let note = self.strays_note();
                let reason = format!("no NOTIFICATION RESPONSE with id {id} within {wait:?}{note}");
                self.checklist.fail(&rule::NOTIF_1, reason.clone());
                Err(reason)
            }
        }
    }

    pub(super) fn check_ack_payload(&self, ack: &Incoming) {
        let payload = ack.payload().cloned().unwrap_or(Value::Null);
        let outcome = match &payload {
            Value::Array(items) if items.is_empty() => Ok(()),
            other => Err(format!("acknowledgement {} has payload {other}, not []", ack.id().unwrap_or("?"))),
        };
        self.checklist.check(&rule::NOTIF_2, "acknowledgements, each with payload []", outcome);
    }

    /// R-NOTIF-1 to 5, R-ENV-8 and R-LIMIT-2 on the accepted connection.
    pub(super) async fn notifications(&mut self, peer: &mut Peer) {
        let ack_timeout = self.options.ack_timeout;
        let job = self.job_id();
        let single = messages::notification_single(job);
        match self.acknowledged(peer, &single, ack_timeout).await {
            Ok(_) => {
                // The same message again, as a service resends it when the acknowledgement was lost (D12).
                match self.acknowledged(peer, &single, ack_timeout).await {
                    Ok(after) => self
                        .checklist
                        .pass(&rule::NOTIF_3, format!("acknowledged again after {} ms", after.as_millis())),
                    Err(reason) => self.checklist.fail(&rule::NOTIF_3, reason),
                }
            }
            Err(reason) => self.checklist.fail(
                &rule::NOTIF_3,
                format!("not exercised: the first notification was not acknowledged ({reason})"),
            ),
        }
        if peer.ended() {
            return;
        }
        self.batches(peer).await;
        if peer.ended() {
            return;
        }
        let job = self.job_id();
        match self.acknowledged(peer, &messages::notification_with_extra_keys(job), ack_timeout).await {
            Ok(_) => self.checklist.pass(
                &rule::ENV_8,
                "a NOTIFICATION with unknown keys (envelope, element, record) was acknowledged",
            ),
            Err(reason) => self.checklist.fail(&rule::ENV_8, reason),
        }
        if peer.ended() {
            return;
        }
        let size = self.options.max_message_bytes;
        let job = self.job_id();
        match messages::notification_of_size(job, size) {
            Ok(large) => match self.acknowledged(peer, &large, ack_timeout + self.options.reply_timeout).await {
                Ok(after) => self.checklist.pass(
                    &rule::LIMIT_2,
                    format!("a NOTIFICATION of {size} bytes (padded with an unknown key) was acknowledged after {} ms", after.as_millis()),
                ),
                Err(reason) => self.checklist.fail(&rule::LIMIT_2, format!("a message of exactly {size} bytes: {reason}")),
            },
            Err(error) => self.checklist.skip(&rule::LIMIT_2, error.to_string()),
        }
    }

    /// R-NOTIF-4 and R-NOTIF-5: three batches sent back to back, each acknowledged by its own id.
    async fn batches(&mut self, peer: &mut Peer) {
        let mut outstanding = Vec::new();
        for _ in 0..3 {
            let job = self.job_id();
            let batch = messages::notification_batch(job);
            if let Err(error) = peer.send_text(batch.text.clone()).await {
                self.checklist.fail(&rule::NOTIF_4, error);
                return;
            }
            self.sent_ids.push(batch.id.clone());
            outstanding.push(batch.id);
        }
        let first = outstanding[0].clone();
        let all = outstanding.clone();
        let deadline = Instant::now() + self.options.ack_timeout;
        let mut order = Vec::new();
        while !outstanding.is_empty() {
            let pending = outstanding.clone();
            let wanted = |message: &Incoming| {
                message.is("NOTIFICATION", "RESPONSE")
                    && message.id().is_some_and(|id| pending.iter().any(|p| p == id))
            };
            match self.next_message(peer, deadline, wanted).await {
                Wait::Found(ack) => {
                    self.checklist.observe(&rule::NOTIF_1, "notifications acknowledged in time, by id");
                    let id = ack.id().unwrap_or_default().to_owned();
                    order.push(all.iter().position(|candidate| *candidate == id).unwrap_or(0) + 1);
                    outstanding.retain(|candidate| *candidate != id);
                }
                Wait::Ended(event) => {
                    let reason = format!("the endpoint {} with batches outstanding", describe_end(&event));
                    self.checklist.fail(&rule::NOTIF_4, reason.clone());
                    self.checklist.fail(&rule::NOTIF_5, reason);
                    return;
                }
                Wait::Timeout => break,
            }
        }
        if outstanding.contains(&first) {
            let note = self.strays_note();
            self.checklist.fail(
                &rule::NOTIF_4,
                format!(
                    "the batch {first} (2 elements, 2 records each) was not acknowledged within {:?}{note}",
                    self.options.ack_timeout
                ),
            );
        } else {
            self.checklist.pass(
                &rule::NOTIF_4,
                "a JOB element and an IMAGE element of 2 records each, acknowledged as one message",
            );
        }
        if outstanding.is_empty() {
            let order: Vec<String> = order.iter().map(usize::to_string).collect();
            self.checklist.pass(
                &rule::NOTIF_5,
                format!("3 batches sent together, acknowledged by id in the order {}", order.join(", ")),
            );
        } else {
            let note = self.strays_note();
            let reason =
                format!("{} of 3 batches sent together were not acknowledged by id{note}", outstanding.len());
            self.checklist.fail(&rule::NOTIF_1, reason.clone());
            self.checklist.fail(&rule::NOTIF_5, reason);
        }
    }
}
