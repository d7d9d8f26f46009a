//! The notifications a service sends: checked on arrival (R-NOTIF-6, 7), acknowledged or held back, and
//! the resend and acknowledgement rules (R-NOTIF-8 to 10).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{run_notify_command, AckStyle, Held, ServiceRun, ACK_GRACE};
use crate::checks::{self, Incoming};
use crate::messages;
use crate::peer::{describe_end, Event, Peer};
use crate::rule;

impl ServiceRun {
    pub(super) async fn on_notification(&mut self, peer: &mut Peer, message: &Incoming) {
        let payload = message.payload().cloned().unwrap_or(Value::Null);
        self.checklist.check(
            &rule::NOTIF_6,
            "NOTIFICATION REQUESTs checked, all conform",
            checks::notification_payload(&payload),
        );
        match checks::notification_records(&payload) {
            Ok(0) => {}
            Ok(_) => self.checklist.observe(&rule::NOTIF_7, "NOTIFICATION REQUESTs checked, all conform"),
            Err(reason) => self.checklist.fail(&rule::NOTIF_7, reason),
        }
        let Some(id) = message.id().map(str::to_owned) else { return };
        let session = &mut self.session;
        if let Some((at, style)) = session.acknowledged.get(&id) {
            if at.elapsed() > ACK_GRACE {
                session.resent_after_ack.push((id.clone(), *style));
            }
            let _ = peer.send_text(messages::acknowledgement(&id, json!([])).text).await;
            return;
        }
        if session.held.iter().any(|held| held.id == id || held.payload == payload) {
            session.resends.push((id, payload));
            return;
        }
        if session.capture {
            session.capture = false;
            let held = Held { id, payload };
            session.held.push(held.clone());
            session.captured.push_back(held);
            return;
        }
        self.acknowledge(peer, &id, AckStyle::Plain).await;
    }

    pub(super) async fn acknowledge(&mut self, peer: &mut Peer, id: &str, style: AckStyle) {
        let payload = match style {
            AckStyle::Plain => json!([]),
            AckStyle::Lenient => json!({}),
        };
        self.session.acknowledged.insert(id.to_owned(), (Instant::now(), style));
        let _ = peer.send_text(messages::acknowledgement(id, payload).text).await;
    }

    /// Runs the notify command (if any) and waits for a notification to capture.
    async fn capture_notification(&mut self, peer: &mut Peer) -> Result<Held, String> {
        self.session.capture = true;
        let command = self.options.notify_command.clone().map(|command| {
            self.notify_rounds += 1;
            let round = self.notify_rounds;
            tokio::spawn(run_notify_command(command, round))
        });
        let wait = self.options.notification_wait;
        let deadline = Instant::now() + wait;
        while self.session.captured.is_empty() {
            match self.pump(peer, deadline).await {
                None => break,
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.session.capture = false;
                    return Err(format!(
                        "the service {} while the kit waited for a notification",
                        describe_end(&event)
                    ));
                }
                Some(_) => {}
            }
        }
        self.session.capture = false;
        if let Some(held) = self.session.captured.pop_front() {
            return Ok(held);
        }
        let how = match command {
            Some(task) => match tokio::time::timeout(Duration::from_millis(100), task).await {
                Ok(Ok(outcome)) => format!("the --notify-cmd {outcome}, but"),
                _ => "the --notify-cmd is still running, and".to_owned(),
            },
            None => {
                "without --notify-cmd the kit waits for the primary server's own activity (run a backup), and"
                    .to_owned()
            }
        };
        Err(format!("{how} no NOTIFICATION arrived within {} s", wait.as_secs()))
    }

    /// R-NOTIF-8 to 10 (R-NOTIF-6 and 7 are checked on every notification).
    pub(super) async fn notifications(&mut self, peer: &mut Peer) {
        let notification_rules =
            [&rule::NOTIF_6, &rule::NOTIF_7, &rule::NOTIF_8, &rule::NOTIF_9, &rule::NOTIF_10];
        self.progress("waiting for a notification (held unacknowledged until the service sends it again)");
        let first = match self.capture_notification(peer).await {
            Ok(held) => held,
            Err(reason) => {
                for rule in notification_rules {
                    self.checklist.skip(rule, format!("not exercised: {reason}"));
                }
                return;
            }
        };
        let resend_wait = self.options.resend_wait;
        let deadline = Instant::now() + resend_wait;
        while self.session.resends.is_empty() {
            match self.pump(peer, deadline).await {
                None | Some(Event::Closed(_) | Event::Lost(_)) => break,
                Some(_) => {}
            }
        }
        let resends = std::mem::take(&mut self.session.resends);
        match resends.first() {
            Some((id, payload)) if *id == first.id && *payload == first.payload => self.checklist.pass(
                &rule::NOTIF_8,
                format!("{id} not acknowledged: sent again with the same id and payload"),
            ),
            Some((id, _)) if *id == first.id => self
                .checklist
                .fail(&rule::NOTIF_8, format!("{id} was sent again with the same id but another payload")),
            Some((id, _)) => self.checklist.fail(
                &rule::NOTIF_8,
                format!("{} was sent again with a new id {id}: a resend keeps the id (D12)", first.id),
            ),
            None => self.checklist.fail(
                &rule::NOTIF_8,
                format!(
                    "{} was not acknowledged and not sent again within {} s (--resend-wait)",
                    first.id,
                    resend_wait.as_secs()
                ),
            ),
        }
        if peer.ended() {
            return;
        }
        // Acknowledge it (and any copy under another id), then a second one with a payload of {}.
        let mut ids = vec![first.id.clone()];
        ids.extend(resends.into_iter().map(|(id, _)| id).filter(|id| *id != first.id));
        for id in &ids {
            self.acknowledge(peer, id, AckStyle::Plain).await;
        }
        self.session.held.clear();
        self.progress("waiting for a second notification (acknowledged with payload {})");
        let second = match self.capture_notification(peer).await {
            Ok(held) => {
                self.acknowledge(peer, &held.id, AckStyle::Lenient).await;
                self.session.held.clear();
                Some(held)
            }
            Err(reason) => {
                self.checklist.skip(&rule::NOTIF_10, format!("not exercised: {reason}"));
                None
            }
        };
        if peer.ended() {
            return;
        }
        let deadline = Instant::now() + resend_wait;
        while self
            .pump(peer, deadline)
            .await
            .is_some_and(|event| !matches!(event, Event::Closed(_) | Event::Lost(_)))
        {}
        let resent = std::mem::take(&mut self.session.resent_after_ack);
        match resent.iter().find(|(_, style)| *style == AckStyle::Plain) {
            Some((id, _)) => self
                .checklist
                .fail(&rule::NOTIF_9, format!("{id} was sent again after its acknowledgement ([])")),
            None => self.checklist.pass(
                &rule::NOTIF_9,
                format!(
                    "{} acknowledged with []: not sent again within {} s",
                    first.id,
                    resend_wait.as_secs()
                ),
            ),
        }
        if let Some(second) = second {
            match resent.iter().find(|(_, style)| *style == AckStyle::Lenient) {
                Some((id, _)) => self.checklist.fail(
                    &rule::NOTIF_10,
                    format!("{id} was sent again after an acknowledgement with payload {{}}: any payload acknowledges (D11)"),
                ),
                None => self.checklist.pass(
                    &rule::NOTIF_10,
                    format!("{} acknowledged with payload {{}}: not sent again within {} s", second.id, resend_wait.as_secs()),
                ),
            }
        }
    }
}
