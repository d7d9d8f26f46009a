//! `nbwss protocol ...` as a cloud developer uses it.

use crate::util::{guide_examples, nbwss};

#[test]
fn check_accepts_every_complete_guide_example() {
    let mut files: Vec<String> = std::fs::read_dir(guide_examples())
        .unwrap()
        .map(|entry| entry.unwrap().path().to_string_lossy().into_owned())
        .filter(|path| path.ends_with(".json") && !path.ends_with(".partial.json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 9);
    let args: Vec<&str> = ["protocol", "check"].into_iter().chain(files.iter().map(String::as_str)).collect();
    let run = nbwss(&args, "");
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.lines().filter(|line| line.contains(": ok: ")).count(), 9, "{}", run.stdout);
    assert!(run.stdout.contains(
        "COMMAND REQUEST 99B9BD8C-9E3E-406A-A7EE-33B88531C7D9: POST /netbackup/config/servers/vmservers"
    ));
    assert!(run.stdout.contains("CONNECT REQUEST 0CEAB6C2-0BBF-4F60-974D-C1F3EF39B872: token ***"));
    assert!(!run.stdout.contains("qwerrtrtrtrt2234344"), "the token is never printed");
}

#[test]
fn check_names_the_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let good = guide_examples().join("connect-response.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version":"1.0","id":"A","type":"COMMAND","subType":"REQUEST","timeStamp":1,
            "payload":{"uri":"/netbackup/login","method":"POST","parameters":{"userName":"u"}}}"#,
    )
    .unwrap();
    let run = nbwss(&["protocol", "check", good.to_str().unwrap(), bad.to_str().unwrap()], "");
    assert_eq!(run.status, 1);
    assert!(run.stdout.contains("connect-response.json: ok: CONNECT RESPONSE"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("bad.json: error: payload.parameters: must be a string, not an object (message A)"),
        "{}",
        run.stdout
    );

    let run = nbwss(&["protocol", "check", "-"], "not json");
    assert_eq!(run.status, 1);
    assert!(run.stdout.starts_with("-: error: not valid JSON"), "{}", run.stdout);

    let run = nbwss(&["protocol", "check", "--max-bytes", "1024", good.to_str().unwrap()], "");
    assert_eq!(run.status, 0);
    let run = nbwss(&["protocol", "check", "--max-bytes", "10", good.to_str().unwrap()], "");
    assert_eq!(run.status, 1);
    assert!(run.stdout.contains("larger than the limit of 10 bytes"), "{}", run.stdout);

    let run = nbwss(&["protocol", "check", "/nonexistent/x.json"], "");
    assert_eq!(run.status, 1);
    assert!(run.stdout.contains("/nonexistent/x.json: error: reading /nonexistent/x.json"), "{}", run.stdout);
}

#[test]
fn examples_pass_check() {
    for kind in [
        "connect-request",
        "connect-response",
        "command-request",
        "command-response",
        "notification-request",
        "notification-response",
    ] {
        let example = nbwss(&["protocol", "example", kind], "");
        assert_eq!(example.status, 0, "{kind}: {}", example.stderr);
        let check = nbwss(&["protocol", "check", "-"], &example.stdout);
        assert_eq!(check.status, 0, "{kind}: {}", check.stdout);
    }
}

#[test]
fn details_and_properties_are_checked() {
    let run = nbwss(
        &["protocol", "details", "-"],
        r#"{"hostName":"h","url":"ws://h/nbwss","groupId":"g","priority":1,"token":"t"}"#,
    );
    assert_eq!(run.status, 1);
    assert!(run.stdout.contains("url: must start with wss:// (ws:// is not supported"), "{}", run.stdout);
    let run = nbwss(
        &["protocol", "details", "-"],
        r#"{"hostName":"h","url":"wss://h/nbwss","groupId":"g","priority":1,"token":"secret-token"}"#,
    );
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert!(!run.stdout.contains("secret-token"));

    let defaults = nbwss(&["protocol", "properties"], "");
    assert!(defaults.stdout.contains("notification.scheduledRate=5"));
    let check = nbwss(&["protocol", "properties", "-"], &defaults.stdout);
    assert_eq!(check.status, 0, "{}", check.stdout);
    assert!(check.stdout.starts_with("-: ok: ") && check.stdout.contains(" keys set"), "{}", check.stdout);
    let bad = nbwss(&["protocol", "properties", "-"], "keepAlive.scheduledRate=often\n");
    assert_eq!(bad.status, 1);
    assert!(
        bad.stdout.contains("keepAlive.scheduledRate=often: must be an integer number of seconds"),
        "{}",
        bad.stdout
    );
}
