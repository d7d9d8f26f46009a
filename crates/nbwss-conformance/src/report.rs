//! The outcome of a run: one row per rule of the mode, as a table for people or JSON for CI.

use serde_json::{json, Value};

use crate::rule::{Mode, Rule};

/// How a rule fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The peer kept the rule.
    Pass,
    /// The peer broke the rule.
    Fail,
    /// The rule could not be exercised in this run; the reason says why and what would exercise it.
    Skip,
}

impl Status {
    /// `pass`, `FAIL` or `skip`, as the table prints it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }

    fn json_name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

/// One rule's outcome.
#[derive(Debug, Clone)]
pub struct Row {
    /// The rule.
    pub rule: &'static Rule,
    /// Pass, fail or skip.
    pub status: Status,
    /// One line: what was seen, or why the rule was not exercised.
    pub reason: String,
}

/// Every rule of one mode, in the protocol document's order.
#[derive(Debug, Clone)]
pub struct Report {
    /// Which side was checked.
    pub mode: Mode,
    /// What was checked (the endpoint's URL, or the kit's URL the service connected to).
    pub target: String,
    /// One row per rule of the mode.
    pub rows: Vec<Row>,
}

impl Report {
    /// Ids of the rules that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.with_status(Status::Fail)
    }

    /// Ids of the rules with `status`.
    pub fn with_status(&self, status: Status) -> Vec<&'static str> {
        self.rows.iter().filter(|row| row.status == status).map(|row| row.rule.id).collect()
    }

    /// Whether no rule failed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|row| row.status != Status::Fail)
    }

    /// How many rows have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.rows.iter().filter(|row| row.status == status).count()
    }

    /// The report as JSON: `{mode, target, passed, counts, rules: [{id, section, title, status, reason, doc}]}`.
    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self
            .rows
            .iter()
            .map(|row| {
                json!({
                    "id": row.rule.id,
                    "section": row.rule.section,
                    "basis": row.rule.basis,
                    "title": row.rule.title,
                    "status": row.status.json_name(),
                    "reason": row.reason,
                    "doc": row.rule.doc_link(),
                })
            })
            .collect();
        json!({
            "mode": self.mode.as_str(),
            "target": self.target,
            "passed": self.passed(),
            "counts": {
                "pass": self.count(Status::Pass),
                "fail": self.count(Status::Fail),
                "skip": self.count(Status::Skip),
            },
            "rules": rules,
        })
    }

    /// The report as a table: rule, result, section, and the one-line reason; then a summary line.
    pub fn table(&self) -> String {
        let id_width = self.rows.iter().map(|row| row.rule.id.len()).max().unwrap_or(4).max(4);
        let mut out = format!("{:<id_width$}  RESULT  §      RULE / REASON\n", "RULE");
        for row in &self.rows {
            out.push_str(&format!(
                "{:<id_width$}  {:<6}  {:<5}  {}\n{:<id_width$}                   {}\n",
                row.rule.id,
                row.status.label(),
                row.rule.section,
                row.rule.title,
                "",
                row.reason,
            ));
        }
        out.push_str(&format!(
            "\n{} of {} rules passed, {} failed, {} skipped ({} mode, {}); rules: docs/protocol.md §16\n",
            self.count(Status::Pass),
            self.rows.len(),
            self.count(Status::Fail),
            self.count(Status::Skip),
            self.mode.as_str(),
            self.target,
        ));
        out
    }
}
