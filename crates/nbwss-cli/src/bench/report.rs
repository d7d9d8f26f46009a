//! A scenario's result: tables for people, named figures for scripts, and the targets with
//! whether each was met.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::process;

/// The result of one scenario.
#[derive(Debug)]
pub(crate) struct Report {
    scenario: &'static str,
    parameters: Vec<(String, String)>,
    tables: Vec<Table>,
    figures: Map<String, Value>,
    targets: Vec<Target>,
    notes: Vec<String>,
}

/// A table of figures.
#[derive(Debug)]
pub(crate) struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// A target from the issue and how this run compares.
#[derive(Debug)]
struct Target {
    what: String,
    target: String,
    measured: String,
    met: bool,
}

impl Table {
    pub(crate) fn new(title: &str, headers: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|header| header.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        // Columns of figures are right-aligned, columns of words left-aligned.
        let numeric: Vec<bool> = (0..columns)
            .map(|index| {
                index > 0
                    && self.rows.iter().all(|row| {
                        row.get(index).is_none_or(|cell| {
                            cell.is_empty()
                                || cell.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-')
                        })
                    })
            })
            .collect();
        let line = |cells: &[String], out: &mut String| {
            let mut text = String::new();
            for (index, cell) in cells.iter().enumerate().take(columns) {
                let pad = " ".repeat(widths[index].saturating_sub(cell.chars().count()));
                let separator = if index == 0 { "" } else { "  " };
                if numeric[index] {
                    let _ = write!(text, "{separator}{pad}{cell}");
                } else {
                    let _ = write!(text, "{separator}{cell}{pad}");
                }
            }
            let _ = writeln!(out, "  {}", text.trim_end());
        };
        let _ = writeln!(out, "\n{}", self.title);
        line(&self.headers, out);
        let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        line(&rule, out);
        for row in &self.rows {
            line(row, out);
        }
    }

    fn to_json(&self) -> Value {
        json!({"title": self.title, "headers": self.headers, "rows": self.rows})
    }
}

impl Report {
    pub(crate) fn new(scenario: &'static str) -> Self {
        Self {
            scenario,
            parameters: Vec::new(),
            tables: Vec::new(),
            figures: Map::new(),
            targets: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A parameter of the run (shown in the header).
    pub(crate) fn parameter(&mut self, name: &str, value: impl ToString) {
        self.parameters.push((name.to_owned(), value.to_string()));
    }

    pub(crate) fn table(&mut self, table: Table) {
        self.tables.push(table);
    }

    /// A named figure for the JSON output.
    pub(crate) fn figure(&mut self, name: &str, value: f64) {
        let value = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.figures.insert(name.to_owned(), value);
    }

    pub(crate) fn target(&mut self, what: &str, target: &str, measured: String, met: bool) {
        self.targets.push(Target { what: what.to_owned(), target: target.to_owned(), measured, met });
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let machine = process::machine();
        let _ = writeln!(
            out,
            "\nnbwss bench {} — {} CPUs ({}), {} MiB memory, load {}",
            self.scenario, machine.cpus, machine.model, machine.memory_mib, machine.load
        );
        if !self.parameters.is_empty() {
            let parameters: Vec<String> =
                self.parameters.iter().map(|(name, value)| format!("{name}={value}")).collect();
            let _ = writeln!(out, "parameters: {}", parameters.join(", "));
        }
        for table in &self.tables {
            table.render(&mut out);
        }
        if !self.targets.is_empty() {
            let mut table = Table::new("Targets", &["what", "target", "measured", "met"]);
            for target in &self.targets {
                table.row(vec![
                    target.what.clone(),
                    target.target.clone(),
                    target.measured.clone(),
                    if target.met { "yes".to_owned() } else { "NO".to_owned() },
                ]);
            }
            table.render(&mut out);
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out.push('\n');
        out
    }

    pub(crate) fn to_json(&self) -> Value {
        let machine = process::machine();
        let parameters: Map<String, Value> = self
            .parameters
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        json!({
            "scenario": self.scenario,
            "machine": {
                "cpus": machine.cpus,
                "model": machine.model,
                "memory_mib": machine.memory_mib,
                "load": machine.load,
            },
            "parameters": parameters,
            "figures": self.figures,
            "tables": self.tables.iter().map(Table::to_json).collect::<Vec<_>>(),
            "targets": self.targets.iter().map(|target| json!({
                "what": target.what,
                "target": target.target,
                "measured": target.measured,
                "met": target.met,
            })).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}
