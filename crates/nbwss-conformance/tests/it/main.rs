//! The conformance kit against peers written for the tests: a correct one passes every rule, and each
//! deliberately broken one fails exactly the rules it breaks.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod doc;
mod endpoint_mode;
mod fake_endpoint;
mod fake_service;
mod service_mode;

use std::collections::BTreeSet;

use nbwss_conformance::{Report, Status};

/// The ids of the rules with `status`.
pub fn ids(report: &Report, status: Status) -> BTreeSet<&'static str> {
    report.with_status(status).into_iter().collect()
}

/// Asserts which rules failed and that none was skipped, showing the whole report otherwise.
pub fn assert_failed(report: &Report, expected: &[&str]) {
    let expected: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(ids(report, Status::Fail), expected, "failed rules differ:\n{}", report.table());
    assert_eq!(ids(report, Status::Skip), BTreeSet::new(), "skipped rules:\n{}", report.table());
}
