//! `ServiceKit` against the fake service, correct and with each fault.

use std::time::Duration;

use nbwss_conformance::{rule, Mode, Report, ServiceKit, ServiceOptions, Status};

use crate::fake_service::{self, ServiceFault};
use crate::{assert_failed, ids};

const LIMIT: usize = 64 * 1024;

async fn check(fault: ServiceFault) -> Report {
    let options = ServiceOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        // Generous for a loaded machine: only the faulty peers ever wait them out.
        first_wait: Duration::from_secs(30),
        reconnect_wait: Duration::from_secs(10),
        reply_timeout: Duration::from_secs(3),
        command_timeout: Duration::from_secs(3),
        notification_wait: Duration::from_secs(10),
        resend_wait: Duration::from_secs(2),
        keepalive_rate: fake_service::PING_RATE,
        max_pong_miss: fake_service::MAX_PONG_MISS,
        max_message_bytes: LIMIT,
        ..ServiceOptions::default()
    };
    let kit = ServiceKit::bind(options).await.unwrap();
    let service = fake_service::start(
        kit.url().to_owned(),
        kit.identity().certificate_sha256.clone(),
        kit.token().to_owned(),
        fault,
        LIMIT,
    );
    let report = kit.run().await;
    service.abort();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_service_passes_every_service_rule() {
    let report = check(ServiceFault::None).await;
    assert_failed(&report, &[]);
    let expected = rule::ALL.iter().filter(|rule| rule.applies_to(Mode::Service)).count();
    assert_eq!(ids(&report, Status::Pass).len(), expected, "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_answering_commands_late_fails_the_command_rules() {
    let report = check(ServiceFault::AnswersCommandsLate).await;
    let failed = ids(&report, Status::Fail);
    let expected =
        ["R-COMMAND-5", "R-COMMAND-7", "R-COMMAND-8", "R-COMMAND-9", "R-COMMAND-10", "R-ENV-8", "R-LIMIT-2"];
    assert_eq!(failed, expected.into(), "{}", report.table());
    // With no answer in time, the header rule has nothing to judge: skipped, and says so.
    assert_eq!(ids(&report, Status::Skip), ["R-COMMAND-6"].into(), "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_resending_under_a_new_id_fails_r_notif_8() {
    let report = check(ServiceFault::ResendsWithNewId).await;
    assert_failed(&report, &["R-NOTIF-8"]);
    let row = report.rows.iter().find(|row| row.rule.id == "R-NOTIF-8").unwrap();
    assert!(row.reason.contains("new id"), "{}", row.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_sending_an_oversized_message_fails_r_limit_1() {
    assert_failed(&check(ServiceFault::OversizedAnswer).await, &["R-LIMIT-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_closing_with_the_wrong_code_fails_r_close_1() {
    let report = check(ServiceFault::WrongCloseCode).await;
    assert_failed(&report, &["R-CLOSE-1"]);
    let row = report.rows.iter().find(|row| row.rule.id == "R-CLOSE-1").unwrap();
    assert!(row.reason.contains("1000") && row.reason.contains("1007"), "{}", row.reason);
}

#[tokio::test]
async fn no_service_connecting_fails_r_ws_1_and_says_what_to_do() {
    let options = ServiceOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        first_wait: Duration::from_millis(300),
        ..ServiceOptions::default()
    };
    let report = ServiceKit::bind(options).await.unwrap().run().await;
    assert_eq!(report.failed(), ["R-WS-1"]);
    assert!(report.rows[0].reason.contains("details file"), "{}", report.rows[0].reason);
    assert!(report.rows[1..]
        .iter()
        .all(|row| row.status == Status::Skip && row.reason.starts_with("not reached")));
}
