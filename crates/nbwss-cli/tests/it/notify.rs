//! `nbwss notify` as NetBackup's notify scripts use it: validated records land in the service's outbox.

use nbwss_protocol::Properties;
use nbwss_service::notify::open_outbox;

use crate::util::nbwss;

#[test]
fn records_from_flags_and_json_are_enqueued_and_bad_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    let run = nbwss(
        &[
            "notify",
            "--data-dir",
            data,
            "--job",
            "--job-id",
            "41",
            "--state",
            "DONE",
            "--policy-name",
            "p1",
            "--policy-type",
            "STANDARD",
            "--client-name",
            "c1",
        ],
        "",
    );
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.trim(), "enqueued JOB 41 DONE");

    let image = r#"{"clientType": "STANDARD", "clientName": "c1", "backupTime": 1700000000,
                    "createdTime": 1700000100, "operationId": "CREATE", "backupId": "c1_1700000000"}"#;
    let run = nbwss(&["notify", "--data-dir", data, "--file", "-"], image);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.trim(), "enqueued IMAGE c1_1700000000 CREATE");

    // A record that breaks D14 is refused with the field named, and nothing is enqueued. (Through the
    // deprecated `--json FILE` spelling, which still works and says what to write instead.)
    let bad = image.replace(r#""backupTime": 1700000000"#, r#""backupTime": "yesterday""#);
    let run = nbwss(&["notify", "--data-dir", data, "--json", "-"], &bad);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("backupTime"), "{}", run.stderr);
    assert!(run.stderr.contains("deprecated; write `--file FILE`"), "{}", run.stderr);

    let outbox = open_outbox(dir.path(), &Properties::default()).unwrap();
    assert_eq!(outbox.record_count().unwrap(), 2);

    let run = nbwss(&["notify", "--data-dir", "/nonexistent/dir", "--job", "--job-id", "1"], "");
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);
}
