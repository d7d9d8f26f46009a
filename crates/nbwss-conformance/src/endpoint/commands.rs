//! The COMMANDs an endpoint sends when its application asks (through the kit's command trigger):
//! R-COMMAND-1 to 4.

use std::time::Duration;

use tokio::time::Instant;

use super::{CommandTrigger, EndpointRun, Wait};
use crate::checks;
use crate::messages::{self, Outgoing};
use crate::peer::{describe_end, Event, Peer};
use crate::rule::{self, Rule};

impl EndpointRun {
    /// R-COMMAND-1 to 4, through the trigger.
    pub(super) async fn commands(&mut self, peer: &mut Peer) {
        let Some(trigger) = self.options.command_trigger.clone() else {
            let reason = "skipped: an endpoint sends COMMANDs only when its application asks; pass --command-trigger URL (see --help)";
            for rule in [&rule::COMMAND_1, &rule::COMMAND_2, &rule::COMMAND_3, &rule::COMMAND_4] {
                self.checklist.skip(rule, reason);
            }
            return;
        };
        self.progress(&format!("COMMANDs through the trigger {}", trigger.url));
        let client = match reqwest::Client::builder()
            .use_preconfigured_tls((*self.tls).clone())
            .timeout(self.options.reply_timeout * 2)
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                self.checklist
                    .fail(&rule::COMMAND_1, format!("cannot build an HTTP client for the trigger: {error}"));
                return;
            }
        };
        let first =
            self.triggered(peer, &client, &trigger, messages::command_response, &rule::COMMAND_3).await;
        if peer.ended() {
            return;
        }
        let second = self
            .triggered(peer, &client, &trigger, messages::command_response_spring, &rule::COMMAND_4)
            .await;
        match (first, second) {
            (Some(first), Some(second)) if first == second => {
                self.checklist.fail(&rule::COMMAND_2, format!("two COMMANDs both carried id {first}"))
            }
            (Some(first), Some(second))
                if self.sent_ids.contains(&first) || self.sent_ids.contains(&second) =>
            {
                self.checklist.fail(&rule::COMMAND_2, "a COMMAND reused the id of a message the kit had sent")
            }
            (Some(_), Some(_)) => self.checklist.pass(&rule::COMMAND_2, "two COMMANDs, two fresh ids"),
            _ => self.checklist.skip(&rule::COMMAND_2, "not exercised: fewer than two COMMANDs arrived"),
        }
    }

    /// Calls the trigger, answers the COMMAND it causes with `answer` and records whether the call then
    /// succeeds under `rule`; returns the COMMAND's id.
    async fn triggered(
        &mut self,
        peer: &mut Peer,
        client: &reqwest::Client,
        trigger: &CommandTrigger,
        answer: fn(&str) -> Outgoing,
        rule: &Rule,
    ) -> Option<String> {
        let mut request = client.get(&trigger.url);
        for (name, value) in &trigger.headers {
            request = request.header(name, value);
        }
        let call = tokio::spawn(async move {
            let response = request.send().await.map_err(|error| error.to_string())?;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            Ok::<_, String>((status, body))
        });
        let deadline = Instant::now() + self.options.reply_timeout;
        let command =
            match self.next_message(peer, deadline, |message| message.is("COMMAND", "REQUEST")).await {
                Wait::Found(command) => command,
                other => {
                    let what = match other {
                        Wait::Ended(event) => format!("the endpoint {}", describe_end(&event)),
                        _ => format!("no COMMAND REQUEST arrived within {:?}", self.options.reply_timeout),
                    };
                    let called = match tokio::time::timeout(Duration::from_millis(100), call).await {
                        Ok(Ok(Ok((status, _)))) => format!(" (the trigger answered {status})"),
                        Ok(Ok(Err(error))) => format!(" (the trigger failed: {error})"),
                        _ => String::new(),
                    };
                    self.checklist
                        .fail(&rule::COMMAND_1, format!("after calling the trigger, {what}{called}"));
                    self.checklist.skip(rule, "not exercised: no COMMAND to answer");
                    return None;
                }
            };
        self.answer_command(peer, &command, answer).await;
        let id = command.id().unwrap_or_default().to_owned();
        // Keep reading (pings, other messages) while the trigger's call completes.
        let outcome = {
            let mut call = call;
            let deadline = Instant::now() + self.options.reply_timeout * 2;
            loop {
                tokio::select! {
                    result = &mut call => break Some(result),
                    event = peer.recv(deadline) => match event {
                        None => break None,
                        Some(Event::Message(message)) if message.is("COMMAND", "REQUEST") => {
                            self.answer_command(peer, &message, messages::command_response).await;
                        }
                        Some(Event::Closed(_) | Event::Lost(_)) => break None,
                        Some(_) => {}
                    },
                }
            }
        };
        match outcome {
            Some(Ok(Ok((status, body)))) if (200..300).contains(&status) => {
                let carried = if body.contains(&id) { ", its body carried the kit's answer" } else { "" };
                self.checklist.pass(
                    rule,
                    format!("COMMAND {id} answered; the trigger then answered {status}{carried}"),
                );
            }
            Some(Ok(Ok((status, body)))) => self.checklist.fail(
                rule,
                format!("COMMAND {id} answered, but the trigger answered {status}: {}", checks::clip(&body)),
            ),
            Some(Ok(Err(error))) => {
                self.checklist.fail(rule, format!("COMMAND {id} answered, but the trigger failed: {error}"))
            }
            Some(Err(error)) => self.checklist.fail(rule, format!("the trigger call failed: {error}")),
            None => self
                .checklist
                .fail(rule, format!("COMMAND {id} answered, but the trigger did not complete in time")),
        }
        Some(id)
    }
}
