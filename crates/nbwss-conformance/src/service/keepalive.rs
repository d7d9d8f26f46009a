//! Keepalive: the service answers the kit's ping (R-KEEPALIVE-1), pings on its own (R-KEEPALIVE-2), and
//! closes when its pings go unanswered (R-KEEPALIVE-3).

use tokio::time::Instant;

use super::ServiceRun;
use crate::peer::{describe_end, Event, Peer};
use crate::rule;

impl ServiceRun {
    /// R-KEEPALIVE-1.
    pub(super) async fn keepalive(&mut self, peer: &mut Peer) {
        match peer.ping_pong(self.options.reply_timeout, "service").await {
            Ok(after) => self.checklist.pass(
                &rule::KEEPALIVE_1,
                format!("pong with the ping's payload after {} ms", after.as_millis()),
            ),
            Err(reason) => self.checklist.fail(&rule::KEEPALIVE_1, reason),
        }
    }

    /// R-KEEPALIVE-2: the service's own pings.
    pub(super) async fn service_pings(&mut self, peer: &mut Peer) {
        let started = self.session.started.unwrap_or_else(Instant::now);
        let deadline = started + self.options.keepalive_rate + self.options.reply_timeout;
        while self.session.pings == 0 {
            match self.pump(peer, deadline).await {
                None | Some(Event::Closed(_) | Event::Lost(_)) => break,
                Some(_) => {}
            }
        }
        match self.session.first_ping {
            Some(after) => self.checklist.pass(
                &rule::KEEPALIVE_2,
                format!(
                    "first ping {:.1} s after CONNECT was accepted ({} pings so far)",
                    after.as_secs_f64(),
                    self.session.pings
                ),
            ),
            None if peer.ended() => {
                self.checklist.skip(&rule::KEEPALIVE_2, "not exercised: the connection ended first")
            }
            None => self.checklist.fail(
                &rule::KEEPALIVE_2,
                format!(
                    "no ping within {:.0} s (--keepalive-rate plus a margin)",
                    (deadline - started).as_secs_f64()
                ),
            ),
        }
    }

    /// R-KEEPALIVE-3: no pongs until the service closes.
    pub(super) async fn missed_pongs(&mut self, mut peer: Peer) {
        if peer.ended() {
            self.checklist.skip(&rule::KEEPALIVE_3, "not exercised: the connection had already ended");
            return;
        }
        peer.set_answer_pings(false).await;
        self.session.pings_unanswered = 0;
        let allowed = self.options.max_pong_miss;
        let wait = self.options.keepalive_rate * (allowed + 1) + self.options.reply_timeout;
        let deadline = Instant::now() + wait;
        loop {
            match self.pump(&mut peer, deadline).await {
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    let unanswered = self.session.pings_unanswered;
                    if unanswered >= allowed as usize {
                        self.checklist.pass(
                            &rule::KEEPALIVE_3,
                            format!(
                                "after {unanswered} pings without a pong the service {}",
                                describe_end(&event)
                            ),
                        );
                    } else {
                        self.checklist.fail(
                            &rule::KEEPALIVE_3,
                            format!(
                                "the service {} after only {unanswered} unanswered pings (--max-pong-miss {allowed})",
                                describe_end(&event)
                            ),
                        );
                    }
                    return;
                }
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::KEEPALIVE_3,
                        format!(
                            "still open {} s and {} pings after the kit stopped answering them (--max-pong-miss {allowed})",
                            wait.as_secs(),
                            self.session.pings_unanswered
                        ),
                    );
                    peer.close_quietly(1000, "nbwss conformance").await;
                    self.connection_ended("the kit's close after unanswered pings");
                    return;
                }
            }
        }
    }
}
