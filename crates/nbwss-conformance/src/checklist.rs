//! What a run found, rule by rule. A failure sticks (the first reason is kept); a rule checked on every
//! message (the envelope rules) passes when it was observed and never failed; a rule nobody recorded is
//! reported as skipped with the reason given at the end, never dropped silently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::report::{Report, Row, Status};
use crate::rule::{self, Mode, Rule};

#[derive(Debug, Clone)]
enum State {
    Passed(String),
    Failed(String),
    Skipped(String),
    Observed { count: usize, what: &'static str },
}

/// The findings of one run, shared by the tasks of the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Checklist {
    states: Arc<Mutex<HashMap<&'static str, State>>>,
}

impl Checklist {
    fn lock(&self) -> MutexGuard<'_, HashMap<&'static str, State>> {
        self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The rule held; the first reason given is kept unless it fails later.
    pub fn pass(&self, rule: &Rule, reason: impl Into<String>) {
        let mut states = self.lock();
        match states.get(rule.id) {
            Some(State::Failed(_) | State::Passed(_)) => {}
            _ => {
                states.insert(rule.id, State::Passed(reason.into()));
            }
        }
    }

    /// The rule was broken; the first failure's reason is kept.
    pub fn fail(&self, rule: &Rule, reason: impl Into<String>) {
        let mut states = self.lock();
        if !matches!(states.get(rule.id), Some(State::Failed(_))) {
            states.insert(rule.id, State::Failed(reason.into()));
        }
    }

    /// The rule could not be exercised; ignored when something was already recorded.
    pub fn skip(&self, rule: &Rule, reason: impl Into<String>) {
        self.lock().entry(rule.id).or_insert_with(|| State::Skipped(reason.into()));
    }

    /// One more case conformed to a rule checked case by case; the pass reason is `{count} {what}`.
    pub fn observe(&self, rule: &Rule, what: &'static str) {
        let mut states = self.lock();
        match states.get_mut(rule.id) {
            None | Some(State::Skipped(_)) => {
                states.insert(rule.id, State::Observed { count: 1, what });
            }
            Some(State::Observed { count, .. }) => *count += 1,
            Some(State::Passed(_) | State::Failed(_)) => {}
        }
    }

    /// Records either outcome of a per-message check.
    pub fn check(&self, rule: &Rule, what: &'static str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.observe(rule, what),
            Err(reason) => self.fail(rule, reason),
        }
    }

    /// Whether the rule has failed.
    pub fn has_failed(&self, rule: &Rule) -> bool {
        matches!(self.lock().get(rule.id), Some(State::Failed(_)))
    }

    /// The report: every rule of `mode`, in the document's order; rules nobody recorded are skipped with
    /// `unreached` as the reason.
    pub fn report(&self, mode: Mode, target: String, unreached: &str) -> Report {
        let states = self.lock();
        let rows = rule::ALL
            .iter()
            .copied()
            .filter(|rule| rule.applies_to(mode))
            .map(|rule| {
                let (status, reason) = match states.get(rule.id) {
                    Some(State::Passed(reason)) => (Status::Pass, reason.clone()),
                    Some(State::Failed(reason)) => (Status::Fail, reason.clone()),
                    Some(State::Skipped(reason)) => (Status::Skip, reason.clone()),
                    Some(State::Observed { count, what }) => (Status::Pass, format!("{count} {what}")),
                    None => (Status::Skip, unreached.to_owned()),
                };
                Row { rule, status, reason }
            })
            .collect();
        Report { mode, target, rows }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{ENV_1, ENV_2, NOTIF_1, WS_1};

    #[test]
    fn failures_stick_and_unrecorded_rules_are_skipped() {
        let checklist = Checklist::default();
        checklist.observe(&ENV_1, "messages checked");
        checklist.observe(&ENV_1, "messages checked");
        checklist.observe(&ENV_2, "messages checked");
        checklist.fail(&ENV_2, "first");
        checklist.fail(&ENV_2, "second");
        checklist.observe(&ENV_2, "messages");
        checklist.skip(&WS_1, "no");
        checklist.pass(&WS_1, "yes");
        let report = checklist.report(Mode::Endpoint, "wss://x".into(), "not reached");
        let row = |id: &str| report.rows.iter().find(|row| row.rule.id == id).unwrap();
        assert_eq!(row("R-ENV-1").status, Status::Pass);
        assert_eq!(row("R-ENV-1").reason, "2 messages checked");
        assert_eq!((row("R-ENV-2").status, row("R-ENV-2").reason.as_str()), (Status::Fail, "first"));
        assert_eq!(row("R-WS-1").status, Status::Pass);
        assert_eq!((row(NOTIF_1.id).status, row(NOTIF_1.id).reason.as_str()), (Status::Skip, "not reached"));
        assert!(report.rows.iter().all(|row| row.rule.endpoint));
    }
}
