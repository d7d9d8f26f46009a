//! The protocol document and the code agree: every rule the kit checks is stated (with its anchor) in
//! docs/protocol.md and listed in its rule index with the same section, modes and wording; every rule id the
//! document names exists; every decision (`D14`) and section (`§8.5`) the code cites resolves in it (the
//! emulator's, in docs/netbackup-rest-api.md); and the kit depends on no implementation it checks
//! (ARCHITECTURE.md, invariant 4).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use nbwss_conformance::rule;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn document() -> String {
    std::fs::read_to_string(root().join("docs/protocol.md")).expect("docs/protocol.md")
}

/// Tokens `PREFIX<digits>` (e.g. `D14`) standing as words in `text`.
fn numbered(text: &str, prefix: char) -> Vec<u32> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for index in 0..chars.len() {
        if chars[index] != prefix || (index > 0 && chars[index - 1].is_alphanumeric()) {
            continue;
        }
        let digits: String = chars[index + 1..].iter().take_while(|c| c.is_ascii_digit()).collect();
        let after = chars.get(index + 1 + digits.len());
        if !digits.is_empty() && !after.is_some_and(|c| c.is_alphanumeric()) {
            found.push(digits.parse().unwrap());
        }
    }
    found
}

/// Section numbers cited as `§N` or `§N.M`.
fn sections(text: &str) -> Vec<String> {
    text.split('§')
        .skip(1)
        .filter_map(|rest| {
            let number: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let number = number.trim_end_matches('.').to_owned();
            (!number.is_empty()).then_some(number)
        })
        .collect()
}

#[test]
fn every_rule_is_stated_and_indexed_as_the_kit_has_it() {
    let doc = document();
    for rule in rule::ALL {
        let anchor = format!("<a id=\"{}\"></a>**{}**", rule.id.to_ascii_lowercase(), rule.id);
        assert_eq!(doc.matches(&anchor).count(), 1, "{} is stated once, with its anchor", rule.id);
    }
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|line| line.starts_with("| [R-"))
        .map(|line| line.trim_matches('|').split(" | ").map(|cell| cell.trim().to_owned()).collect())
        .collect();
    assert_eq!(rows.len(), rule::ALL.len(), "one index row per rule");
    for (row, rule) in rows.iter().zip(rule::ALL) {
        let modes: Vec<&str> = [("endpoint", rule.endpoint), ("service", rule.service)]
            .into_iter()
            .filter(|(_, applies)| *applies)
            .map(|(mode, _)| mode)
            .collect();
        let expected = vec![
            format!("[{}](#{})", rule.id, rule.id.to_ascii_lowercase()),
            rule.section.to_owned(),
            modes.join(", "),
            rule.title.to_owned(),
        ];
        assert_eq!(row, &expected, "the index row of {}", rule.id);
    }
    let known: BTreeSet<&str> = rule::ALL.iter().map(|rule| rule.id).collect();
    for (index, _) in doc.match_indices("R-") {
        let id: String =
            doc[index..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if id.chars().last().is_some_and(|c| c.is_ascii_digit()) {
            assert!(known.contains(id.as_str()), "the document names {id}, which the kit does not have");
        }
    }
}

#[test]
fn every_decision_and_section_cited_in_the_code_resolves_in_the_document() {
    let doc = document();
    // Decisions are stated as `* **D14.** ...`; D1–D19 at least, later ones as they are taken.
    let decisions: BTreeSet<u32> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("* **D"))
        .filter_map(|rest| rest.split_once(".**"))
        .filter_map(|(number, _)| number.parse().ok())
        .collect();
    assert!(
        (1..=19).all(|number| decisions.contains(&number)),
        "D1–D19 are each stated in §15: {decisions:?}"
    );
    let headings = headings(&doc);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let crate_dir = entry.unwrap().path();
        // The emulator cites the NetBackup REST API notes, another document (Appendix A; checked below).
        if crate_dir.ends_with("nbwss-emulator") {
            continue;
        }
        collect(&crate_dir, &mut files);
    }
    assert!(files.len() > 50, "the crates' sources were found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for number in numbered(&text, 'D') {
            assert!(
                decisions.contains(&number),
                "{} cites D{number}, which §15 does not state",
                file.display()
            );
        }
        for section in sections(&text) {
            assert!(
                headings.contains(&section),
                "{} cites §{section}, which docs/protocol.md has no section for",
                file.display()
            );
        }
    }
}

/// The emulator's citations (`docs/netbackup-rest-api.md` §2.2) resolve in the REST API notes kept beside the
/// protocol document.
#[test]
fn every_section_the_emulator_cites_resolves_in_the_rest_api_notes() {
    let notes = std::fs::read_to_string(root().join("docs/netbackup-rest-api.md"))
        .expect("docs/netbackup-rest-api.md");
    let headings = headings(&notes);
    let mut files = Vec::new();
    collect(&root().join("crates/nbwss-emulator"), &mut files);
    assert!(files.len() > 20, "the emulator's sources were found");
    let mut cited = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for section in sections(&text) {
            cited += 1;
            assert!(
                headings.contains(&section),
                "{} cites §{section}, which docs/netbackup-rest-api.md has no section for",
                file.display()
            );
        }
    }
    assert!(cited > 0, "the emulator cites the notes");
}

/// Section numbers of a document's headings: `## 2. Transport`, `### 5.3 Response payload`, `### 8.1–8.4 ...`
/// (a range).
fn headings(doc: &str) -> BTreeSet<String> {
    let mut headings = BTreeSet::new();
    for number in doc
        .lines()
        .filter(|line| line.starts_with("## ") || line.starts_with("### "))
        .filter_map(|line| line.split_whitespace().nth(1))
    {
        let number = number.trim_end_matches('.');
        match number.split_once('–') {
            Some((first, last)) => {
                let (major, from) = first.split_once('.').unwrap();
                let to = last.split_once('.').unwrap().1;
                for minor in from.parse::<u32>().unwrap()..=to.parse().unwrap() {
                    headings.insert(format!("{major}.{minor}"));
                }
                headings.insert(major.to_owned());
            }
            None => {
                headings.insert(number.to_owned());
            }
        }
    }
    headings
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" {
                collect(&path, files);
            }
        } else if name.ends_with(".rs") || name.ends_with(".md") {
            files.push(path);
        }
    }
}

/// ARCHITECTURE.md, invariant 4: the kit shares no code with the implementations it checks.
#[test]
fn the_kit_depends_on_no_crate_of_ours_but_the_protocol() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let ours: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("nbwss-"))
        .filter_map(|line| line.split(['.', ' ', '=']).next())
        .collect();
    assert_eq!(ours, ["nbwss-protocol"], "crates of ours in nbwss-conformance's manifest");
}
