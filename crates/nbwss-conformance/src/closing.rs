//! The ends of connections, judged the same way in both modes: a peer that must close after an input it
//! cannot take (R-LIMIT-3, R-CLOSE-1 to 3), and a peer answering the kit's own close (R-CLOSE-4).

use std::time::Duration;

use tokio::time::Instant;

use crate::checklist::Checklist;
use crate::checks::Incoming;
use crate::peer::{describe_end, Event, Peer};
use crate::rule::{self, Rule};

/// What a peer did after an input that must close the connection.
pub(crate) enum Closing {
    /// A close frame with one of the expected codes, and its reason.
    Expected(u16, String),
    /// Another ending, in words.
    Other(String),
    /// It answered the input as if it were acceptable (the message, described).
    Accepted(String),
    /// The connection was still open at the deadline.
    Open,
}

/// Reads until the peer ends the connection or `deadline` passes. Messages are checked as every message is
/// and otherwise ignored, except one that `accepts` recognises as an answer to the input.
pub(crate) async fn wait_for_close(
    peer: &mut Peer,
    deadline: Instant,
    codes: &[u16],
    accepts: impl Fn(&Incoming) -> bool,
) -> Closing {
    loop {
        match peer.recv(deadline).await {
            Some(Event::Closed(Some((code, reason)))) if codes.contains(&code) => {
                return Closing::Expected(code, reason)
            }
            Some(event @ (Event::Closed(_) | Event::Lost(_))) => return Closing::Other(describe_end(&event)),
            Some(Event::Message(message)) if accepts(&message) => {
                return Closing::Accepted(message.describe())
            }
            Some(_) => {}
            None => return Closing::Open,
        }
    }
}

/// `1007` or `1002 or 1003`.
pub(crate) fn expected_codes(codes: &[u16]) -> String {
    codes.iter().map(u16::to_string).collect::<Vec<_>>().join(" or ")
}

/// Records `rule` for what a peer (`who`: "endpoint" or "service") did after `what`.
pub(crate) fn record(
    checklist: &Checklist,
    rule: &Rule,
    what: &str,
    who: &str,
    codes: &[u16],
    closing: &Closing,
    waited: Duration,
) {
    let expected = expected_codes(codes);
    match closing {
        Closing::Expected(code, reason) => {
            let reason = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
            checklist.pass(rule, format!("{what}: closed with {code}{reason}"));
        }
        Closing::Other(ending) => {
            checklist.fail(rule, format!("{what}: the {who} {ending}, not with {expected}"))
        }
        Closing::Accepted(answer) => {
            checklist.fail(rule, format!("{what}: answered with {answer} instead of closing with {expected}"))
        }
        Closing::Open => checklist.fail(
            rule,
            format!("{what}: the connection stayed open {waited:?}; expected a close with {expected}"),
        ),
    }
}

/// R-CLOSE-4: the kit closes with 1000 and the peer must answer with a close frame.
pub(crate) async fn orderly_close(checklist: &Checklist, mut peer: Peer, timeout: Duration, who: &str) {
    if peer.ended() {
        checklist.skip(&rule::CLOSE_4, "not exercised: the connection had already ended");
        return;
    }
    if let Err(error) = peer.send_close(1000, "nbwss conformance: done").await {
        checklist.fail(&rule::CLOSE_4, error);
        return;
    }
    let deadline = Instant::now() + timeout;
    loop {
        match peer.recv(deadline).await {
            Some(Event::Closed(code)) => {
                let code = code.map_or("no code".to_owned(), |(code, _)| code.to_string());
                checklist.pass(
                    &rule::CLOSE_4,
                    format!("answered the kit's close (1000) with a close frame ({code})"),
                );
                return;
            }
            Some(event @ Event::Lost(_)) => {
                checklist.fail(
                    &rule::CLOSE_4,
                    format!("the {who} {} instead of answering the close frame", describe_end(&event)),
                );
                return;
            }
            Some(_) => {}
            None => {
                checklist.fail(&rule::CLOSE_4, format!("no close frame within {timeout:?} of the kit's"));
                return;
            }
        }
    }
}
