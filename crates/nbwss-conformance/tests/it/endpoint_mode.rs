//! `check_endpoint` against the fake endpoint, correct and with each fault.

use std::time::Duration;

use nbwss_conformance::{check_endpoint, rule, CommandTrigger, EndpointOptions, Mode, Status, Trust};

use crate::fake_endpoint::{self, EndpointFault};
use crate::{assert_failed, ids};

const LIMIT: usize = 64 * 1024;

async fn check(fault: EndpointFault) -> nbwss_conformance::Report {
    let endpoint = fake_endpoint::start(fault, LIMIT).await;
    let mut options = EndpointOptions::new(
        &endpoint.url,
        fake_endpoint::TOKEN,
        Trust::Fingerprint(endpoint.fingerprint.clone()),
    );
    options.command_trigger = Some(CommandTrigger { url: endpoint.trigger.clone(), headers: Vec::new() });
    options.max_message_bytes = LIMIT;
    options.connect_timeout = Duration::from_secs(5);
    // Generous for a loaded machine: only the faulty peers ever wait them out.
    options.ack_timeout = Duration::from_secs(2);
    options.reply_timeout = Duration::from_secs(3);
    check_endpoint(options).await.unwrap()
}

#[tokio::test]
async fn a_correct_endpoint_passes_every_endpoint_rule() {
    let report = check(EndpointFault::None).await;
    assert_failed(&report, &[]);
    let expected: Vec<&str> =
        rule::ALL.iter().filter(|rule| rule.applies_to(Mode::Endpoint)).map(|rule| rule.id).collect();
    assert_eq!(ids(&report, Status::Pass).len(), expected.len(), "{}", report.table());
}

#[tokio::test]
async fn an_endpoint_answering_connect_with_another_id_fails_r_connect_2_and_3() {
    // It answers every CONNECT with another id, the refusal of a wrong token (R-CONNECT-3) included.
    assert_failed(&check(EndpointFault::ConnectWrongId).await, &["R-CONNECT-2", "R-CONNECT-3"]);
}

#[tokio::test]
async fn an_endpoint_accepting_any_token_fails_r_connect_3() {
    assert_failed(&check(EndpointFault::AcceptsAnyToken).await, &["R-CONNECT-3"]);
}

#[tokio::test]
async fn an_endpoint_that_never_answers_pings_fails_r_keepalive_1() {
    assert_failed(&check(EndpointFault::NoPongs).await, &["R-KEEPALIVE-1"]);
}

#[tokio::test]
async fn an_endpoint_acknowledging_with_another_id_fails_the_acknowledgement_rules() {
    // Every rule whose evidence is an acknowledgement by id fails: plain, resent, batched, with unknown
    // keys, at the size limit.
    assert_failed(
        &check(EndpointFault::AckWrongId).await,
        &["R-NOTIF-1", "R-NOTIF-3", "R-NOTIF-4", "R-NOTIF-5", "R-ENV-8", "R-LIMIT-2"],
    );
}

#[tokio::test]
async fn an_endpoint_sending_an_oversized_command_fails_r_limit_1() {
    assert_failed(&check(EndpointFault::OversizedCommand).await, &["R-LIMIT-1"]);
}

#[tokio::test]
async fn without_a_trigger_the_command_rules_are_skipped_with_the_reason() {
    let endpoint = fake_endpoint::start(EndpointFault::None, LIMIT).await;
    let mut options = EndpointOptions::new(
        &endpoint.url,
        fake_endpoint::TOKEN,
        Trust::Fingerprint(endpoint.fingerprint.clone()),
    );
    options.max_message_bytes = LIMIT;
    options.ack_timeout = Duration::from_secs(2);
    options.reply_timeout = Duration::from_secs(3);
    let report = check_endpoint(options).await.unwrap();
    let skipped = ids(&report, Status::Skip);
    assert_eq!(
        skipped,
        ["R-COMMAND-1", "R-COMMAND-2", "R-COMMAND-3", "R-COMMAND-4"].into(),
        "{}",
        report.table()
    );
    for row in report.rows.iter().filter(|row| row.status == Status::Skip) {
        assert!(row.reason.contains("--command-trigger"), "{}", row.reason);
    }
    assert!(report.passed());
}

#[tokio::test]
async fn an_untrusted_certificate_stops_the_run_and_shows_its_fingerprint() {
    let endpoint = fake_endpoint::start(EndpointFault::None, LIMIT).await;
    let options = EndpointOptions::new(&endpoint.url, fake_endpoint::TOKEN, Trust::Unset);
    let error = check_endpoint(options).await.unwrap_err();
    assert_eq!(error.presented_sha256.as_deref(), Some(endpoint.fingerprint.as_str()));
    assert!(error.to_string().contains("--fingerprint"), "{error}");
    let wrong = "00".repeat(32);
    let report =
        check_endpoint(EndpointOptions::new(&endpoint.url, fake_endpoint::TOKEN, Trust::Fingerprint(wrong)))
            .await
            .unwrap();
    assert_eq!(report.failed(), ["R-WS-1"], "{}", report.table());
    let ws = &report.rows[0];
    assert!(ws.reason.contains(&endpoint.fingerprint), "{}", ws.reason);
}
