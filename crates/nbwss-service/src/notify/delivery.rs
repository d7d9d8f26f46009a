//! Delivery to one connected server group (D11–D13): due messages are sent within
//! `notification.sendTimeout`; a message without acknowledgement is sent again, same id and text, after
//! `notification.scheduledRate`; a NOTIFICATION RESPONSE with a matching id (any payload) acknowledges it.
//!
//! A delivery runs for the life of one connection. When it starts, every unacknowledged message of the
//! group is sent again at once (the connection that carried it is gone, so its acknowledgement cannot
//! come), in detection order, before any new one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::now_millis;
use super::outbox::{Outbox, OutboxError, PendingMessage};

/// The connection could not take the message: it is closed.
#[derive(Debug, thiserror::Error)]
#[error("the connection is closed")]
pub struct SinkError;

/// Where a delivery writes its NOTIFICATION REQUESTs: the connection's writer.
pub trait NotificationSink: Send + Sync {
    /// Sends one encoded message; resolves when the connection has taken it.
    fn send(&self, text: String) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl NotificationSink for mpsc::Sender<String> {
    async fn send(&self, text: String) -> Result<(), SinkError> {
        mpsc::Sender::send(self, text).await.map_err(|_| SinkError)
    }
}

/// How a delivery paces itself.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryTiming {
    /// `notification.scheduledRate`: wait this long for an acknowledgement before sending again.
    pub scheduled_rate: Duration,
    /// `notification.sendTimeout`: how long one send may take.
    pub send_timeout: Duration,
}

impl DeliveryTiming {
    /// The timing from `nbwss.properties`.
    pub fn from_properties(properties: &nbwss_protocol::Properties) -> Self {
        Self {
            scheduled_rate: properties.notification_scheduled_rate,
            send_timeout: properties.notification_send_timeout,
        }
    }
}

/// The connection's side of a delivery: routes acknowledgements to it.
#[derive(Debug, Clone)]
pub struct DeliveryHandle {
    acks: mpsc::UnboundedSender<String>,
}

impl DeliveryHandle {
    /// A NOTIFICATION RESPONSE with this id arrived (its payload does not matter, D11).
    pub fn on_ack(&self, id: &str) {
        let _ = self.acks.send(id.to_owned());
    }
}

/// Delivery of the outbox to one group over one connection.
#[derive(Debug)]
pub struct Delivery {
    outbox: Arc<Outbox>,
    group: String,
    timing: DeliveryTiming,
    acks: mpsc::UnboundedReceiver<String>,
}

/// Why a delivery ended.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The connection closed.
    #[error(transparent)]
    Closed(#[from] SinkError),
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl Delivery {
    /// A delivery to `group`, and the handle through which its connection reports acknowledgements.
    pub fn new(outbox: Arc<Outbox>, group: &str, timing: DeliveryTiming) -> (Self, DeliveryHandle) {
        let (sender, acks) = mpsc::unbounded_channel();
        (Self { outbox, group: group.to_owned(), timing, acks }, DeliveryHandle { acks: sender })
    }

    /// Delivers until cancelled or until the connection closes.
    pub async fn run<S: NotificationSink>(
        mut self,
        sink: S,
        cancel: CancellationToken,
    ) -> Result<(), DeliveryError> {
        let mut appended = self.outbox.appended();
        // Records appended by another process (`nbwss notify`) do not wake this loop: the tick finds them.
        let tick = (self.timing.scheduled_rate / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        // The connection that carried the unacknowledged messages is gone: all of them again, at once.
        for message in self.outbox.unacked(&self.group)? {
            if !self.send(&sink, message, true).await? {
                break;
            }
        }
        let mut acknowledged = Vec::new();
        loop {
            self.round(&sink, &acknowledged).await?;
            acknowledged.clear();
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                ack = self.acks.recv() => match ack {
                    Some(id) => acknowledged.push(id),
                    None => return Ok(()),
                },
                changed = appended.changed() => if changed.is_err() { return Ok(()) },
                () = tokio::time::sleep(tick) => {}
            }
            while let Ok(id) = self.acks.try_recv() {
                acknowledged.push(id);
            }
        }
    }

    /// One durable write: the acknowledgements that arrived together are committed, and the new messages
    /// the window allows are built and recorded as sent, in one transaction. Then what is due is sent:
    /// resends first (they are older), then the new messages. A send that times out ends the round; its
    /// message, and the new ones after it, are sent again after the scheduled rate.
    async fn round<S: NotificationSink>(
        &self,
        sink: &S,
        acknowledged: &[String],
    ) -> Result<(), DeliveryError> {
        let now = now_millis();
        let taken = self.outbox.acknowledge_and_take(&self.group, acknowledged, now)?;
        if taken.acknowledged < acknowledged.len() {
            let ignored = acknowledged.len() - taken.acknowledged;
            tracing::debug!(
                group = self.group,
                ignored,
                "acknowledgement of no outstanding notification ignored"
            );
        }
        let due = self.outbox.due_for_resend(&self.group, now, self.timing.scheduled_rate)?;
        for message in due {
            if taken.messages.iter().any(|new| new.id == message.id) {
                continue;
            }
            if !self.send(sink, message, true).await? {
                return Ok(());
            }
        }
        for message in taken.messages {
            if !self.send(sink, message, false).await? {
                return Ok(());
            }
        }
        // The depth and age gauges are refreshed by the supervisor every 250 ms, not here: `stats` counts
        // the records held, and a round runs after every acknowledgement.
        Ok(())
    }

    /// Sends one message; a message sent before (`again`) is recorded as sent now, a new one was recorded
    /// when it was built. Returns false when the send timed out.
    async fn send<S: NotificationSink>(
        &self,
        sink: &S,
        message: PendingMessage,
        again: bool,
    ) -> Result<bool, DeliveryError> {
        let sent = tokio::time::timeout(self.timing.send_timeout, sink.send(message.text)).await;
        if again {
            self.outbox.mark_sent(&self.group, &message.id, now_millis())?;
        }
        match sent {
            Ok(result) => {
                result?;
                tracing::debug!(
                    group = self.group,
                    id = message.id,
                    records = message.records,
                    sends = message.sends + u32::from(again),
                    "notification sent"
                );
                Ok(true)
            }
            Err(_) => {
                tracing::warn!(
                    group = self.group,
                    id = message.id,
                    "notification send timed out; retrying after notification.scheduledRate"
                );
                Ok(false)
            }
        }
    }
}
