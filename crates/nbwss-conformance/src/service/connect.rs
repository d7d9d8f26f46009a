//! CONNECT from the service's side: the token, nothing sent before the answer, a refusal and an answer with
//! another id each closing the connection (R-CONNECT-1, 5, 6, 7).

use serde_json::Value;
use tokio::time::Instant;

use super::{ServiceRun, CONNECT_DELAY};
use crate::peer::{describe_end, Event, Peer};
use crate::rule;

impl ServiceRun {
    /// R-CONNECT-1: the first message is CONNECT REQUEST with the token. Returns its id.
    pub(super) async fn expect_connect(&mut self, peer: &mut Peer) -> Result<String, String> {
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(Event::Message(message)) => {
                    if !message.is("CONNECT", "REQUEST") {
                        let reason =
                            format!("the first message was {}, not a CONNECT REQUEST", message.describe());
                        self.checklist.fail(&rule::CONNECT_1, reason.clone());
                        return Err(reason);
                    }
                    let token =
                        message.payload().and_then(|payload| payload.get("token")).and_then(Value::as_str);
                    let outcome = match token {
                        Some(token) if token == self.token => Ok(()),
                        Some(_) => Err("CONNECT REQUEST presented another token than the kit's (check the saved WebSocket server)".to_owned()),
                        None => Err("CONNECT REQUEST has no payload.token string".to_owned()),
                    };
                    self.checklist.check(
                        &rule::CONNECT_1,
                        "connections opened with CONNECT and the saved token",
                        outcome,
                    );
                    return message
                        .id()
                        .map(str::to_owned)
                        .ok_or_else(|| "the CONNECT REQUEST has no id".to_owned());
                }
                Some(Event::Ping | Event::Pong(_)) => {}
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    let reason = format!("the service {} before sending CONNECT", describe_end(&event));
                    self.checklist.fail(&rule::CONNECT_1, reason.clone());
                    self.connection_ended("a connection without CONNECT");
                    return Err(reason);
                }
                Some(Event::NotJson | Event::Binary) => {
                    self.checklist.fail(&rule::CONNECT_1, "the first message was not an NBWSS message");
                    return Err("the service's first message was not an NBWSS message".into());
                }
                None => {
                    let reason =
                        format!("no CONNECT REQUEST within {:?} of the upgrade", self.options.reply_timeout);
                    self.checklist.fail(&rule::CONNECT_1, reason.clone());
                    return Err(reason);
                }
            }
        }
    }

    /// R-CONNECT-5: nothing but pings while the kit holds its CONNECT RESPONSE back.
    pub(super) async fn quiet_before_answer(&mut self, peer: &mut Peer) {
        let deadline = Instant::now() + CONNECT_DELAY;
        while let Some(event) = peer.recv(deadline).await {
            match event {
                Event::Message(message) => {
                    self.checklist.fail(
                        &rule::CONNECT_5,
                        format!("sent {} before the CONNECT RESPONSE", message.describe()),
                    );
                }
                Event::Closed(_) | Event::Lost(_) => return,
                _ => {}
            }
        }
        self.checklist.observe(
            &rule::CONNECT_5,
            "times the CONNECT RESPONSE was held back 0.5 s with nothing sent meanwhile",
        );
    }

    /// R-CONNECT-6 (and R-CONNECT-5 after the refusal).
    pub(super) async fn refusal_closes(&mut self, mut peer: Peer) {
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(Event::Closed(Some((1008, reason)))) => {
                    self.checklist
                        .pass(&rule::CONNECT_6, format!("closed with 1008 ({reason}) after valid: false"));
                    break;
                }
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.fail(
                        &rule::CONNECT_6,
                        format!("after valid: false the service {}, not with 1008", describe_end(&event)),
                    );
                    break;
                }
                Some(Event::Message(message)) => self
                    .checklist
                    .fail(&rule::CONNECT_5, format!("sent {} after valid: false", message.describe())),
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::CONNECT_6,
                        format!(
                            "the connection stayed open {:?} after valid: false",
                            self.options.reply_timeout
                        ),
                    );
                    break;
                }
            }
        }
        drop(peer);
        self.connection_ended("valid: false");
    }

    /// R-CONNECT-7.
    pub(super) async fn wrong_id_closes(&mut self, mut peer: Peer) {
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.pass(&rule::CONNECT_7, format!("the service {}", describe_end(&event)));
                    break;
                }
                Some(Event::Message(message)) => {
                    self.checklist.fail(
                        &rule::CONNECT_7,
                        format!(
                            "after a CONNECT RESPONSE with another id the service sent {}, as if accepted",
                            message.describe()
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::CONNECT_7,
                        format!(
                            "the connection stayed open {:?} after a CONNECT RESPONSE with another id",
                            self.options.reply_timeout
                        ),
                    );
                    peer.close_quietly(1000, "nbwss conformance").await;
                    self.connection_ended("a CONNECT RESPONSE with another id");
                    return;
                }
            }
        }
        drop(peer);
        self.connection_ended("a CONNECT RESPONSE with another id");
    }
}
