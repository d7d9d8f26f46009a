//! The COMMANDs the kit sends a service, all at once, and what their answers must be: R-COMMAND-5 to 10,
//! with R-ENV-8 and R-LIMIT-2 on COMMANDs.

use nbwss_protocol::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{remove, ServiceRun};
use crate::checks;
use crate::messages::{self, Outgoing};
use crate::peer::{Event, Peer};
use crate::rule::{self, Rule};

impl ServiceRun {
    /// R-COMMAND-5 to 10, R-ENV-8 and R-LIMIT-2: every COMMAND sent at once, then every answer awaited.
    pub(super) async fn commands(&mut self, peer: &mut Peer) {
        let uri = self.options.get_uri.clone();
        let gets: Vec<Outgoing> = (0..5).map(|_| messages::command_text(Method::Get, &uri)).collect();
        let malformed: Vec<(&str, Outgoing)> = vec![
            ("no uri", messages::command_changed(&uri, |value| remove(value, "uri"))),
            ("no method", messages::command_changed(&uri, |value| remove(value, "method"))),
            (
                "method TRACE",
                messages::command_changed(&uri, |value| value["payload"]["method"] = json!("TRACE")),
            ),
            (
                "parameters a number",
                messages::command_changed(&uri, |value| value["payload"]["parameters"] = json!(42)),
            ),
            (
                "headers a string",
                messages::command_changed(&uri, |value| value["payload"]["headers"] = json!("Accept: */*")),
            ),
        ];
        let outside: Vec<(&str, Outgoing)> =
            ["/etc/passwd", "https://example.invalid/netbackup/ping", "/netbackup/../etc/passwd"]
                .into_iter()
                .map(|bad| {
                    (bad, messages::command_changed(&uri, |value| value["payload"]["uri"] = json!(bad)))
                })
                .collect();
        let version = messages::command_changed(&uri, |value| value["version"] = json!("2.0"));
        let extra = messages::command_with_extra_keys(&uri);
        let at_limit = messages::command_of_size(&uri, self.options.max_message_bytes);

        let mut all: Vec<&Outgoing> = gets.iter().collect();
        all.extend(malformed.iter().map(|(_, message)| message));
        all.extend(outside.iter().map(|(_, message)| message));
        all.push(&version);
        all.push(&extra);
        if let Ok(message) = &at_limit {
            all.push(message);
        }
        for message in &all {
            if let Err(error) = peer.send_text(message.text.clone()).await {
                self.checklist.fail(&rule::COMMAND_5, error);
                return;
            }
        }
        let ids: Vec<String> = all.iter().map(|message| message.id.clone()).collect();
        let deadline = Instant::now() + self.options.command_timeout;
        while !ids.iter().all(|id| self.session.responses.contains_key(id)) {
            match self.pump(peer, deadline).await {
                None | Some(Event::Closed(_) | Event::Lost(_)) => break,
                Some(_) => {}
            }
        }
        let responses = self.session.responses.clone();
        for response in responses.values() {
            let payload = response.payload().cloned().unwrap_or(Value::Null);
            self.checklist.check(
                &rule::COMMAND_5,
                "COMMAND RESPONSEs",
                checks::command_response(&payload).map(|_| ()),
            );
            self.checklist.check(
                &rule::COMMAND_6,
                "COMMAND RESPONSEs checked, all conform",
                checks::response_headers(&payload),
            );
        }
        if responses.is_empty() {
            self.checklist.skip(&rule::COMMAND_6, "not exercised: no COMMAND was answered");
        }
        let timeout = self.options.command_timeout;
        let missing = |id: &str| format!("no COMMAND RESPONSE with id {id} within {timeout:?}");
        let answer = |id: &str| responses.get(id).and_then(|response| response.payload().cloned());

        match answer(&gets[0].id) {
            Some(payload) => {
                let status = payload.get("statusCode").cloned().unwrap_or(Value::Null);
                self.checklist
                    .pass(&rule::COMMAND_5, format!("GET {uri} answered with its id: status {status}"));
            }
            None => self.checklist.fail(&rule::COMMAND_5, missing(&gets[0].id)),
        }
        let unanswered = gets.iter().filter(|get| answer(&get.id).is_none()).count();
        if unanswered == 0 {
            self.checklist.pass(
                &rule::COMMAND_10,
                format!("{} GETs sent together, each answered with its id", gets.len()),
            );
        } else {
            self.checklist.fail(
                &rule::COMMAND_10,
                format!("{unanswered} of {} GETs sent together got no answer within {timeout:?}", gets.len()),
            );
        }
        self.service_errors(&rule::COMMAND_7, &malformed, &[400], &answer, &missing);
        self.service_errors(&rule::COMMAND_8, &outside, &[400, 403], &answer, &missing);
        self.service_errors(&rule::COMMAND_9, &[("version 2.0", version.clone())], &[400], &answer, &missing);
        match answer(&extra.id) {
            Some(payload) if checks::service_error(&payload, &[400]).is_ok() => {
                self.checklist.fail(&rule::ENV_8, "a COMMAND with unknown keys was refused with 400")
            }
            Some(payload) => {
                let status = payload.get("statusCode").cloned().unwrap_or(Value::Null);
                self.checklist.pass(
                    &rule::ENV_8,
                    format!("a COMMAND with unknown keys (envelope, payload) was relayed: status {status}"),
                );
            }
            None => self
                .checklist
                .fail(&rule::ENV_8, format!("a COMMAND with unknown keys: {}", missing(&extra.id))),
        }
        match &at_limit {
            Ok(message) => match answer(&message.id) {
                Some(payload) => {
                    let status = payload.get("statusCode").cloned().unwrap_or(Value::Null);
                    self.checklist.pass(
                        &rule::LIMIT_2,
                        format!("a COMMAND of {} bytes (padded with an unknown key) was answered: status {status}", message.text.len()),
                    );
                }
                None => self.checklist.fail(
                    &rule::LIMIT_2,
                    format!("a COMMAND of exactly the limit: {}", missing(&message.id)),
                ),
            },
            Err(error) => self.checklist.skip(&rule::LIMIT_2, error.to_string()),
        }
    }

    fn service_errors(
        &self,
        rule: &Rule,
        cases: &[(&str, Outgoing)],
        statuses: &[u16],
        answer: &dyn Fn(&str) -> Option<Value>,
        missing: &dyn Fn(&str) -> String,
    ) {
        for (label, message) in cases {
            let outcome = match answer(&message.id) {
                Some(payload) => checks::service_error(&payload, statuses),
                None => Err(missing(&message.id)),
            };
            if let Err(reason) = outcome {
                self.checklist.fail(rule, format!("{label}: {reason}"));
                return;
            }
        }
        let labels: Vec<&str> = cases.iter().map(|(label, _)| *label).collect();
        let statuses: Vec<String> = statuses.iter().map(u16::to_string).collect();
        self.checklist
            .pass(rule, format!("{}: each {} from the service", labels.join(", "), statuses.join("/")));
    }
}
