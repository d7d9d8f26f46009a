//! `/admin/jobs`: listing, both pagination styles, filters, and the job actions.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::util::{encode, vnd, Server};

fn ids(data: &[Value]) -> Vec<u64> {
    data.iter().map(|job| job["id"].as_str().unwrap().parse().unwrap()).collect()
}

#[tokio::test]
async fn jobs_are_json_api_resources_sorted_newest_first() {
    let server = Server::start().await;
    let token = server.login().await;
    let reply = server.get("/admin/jobs?page[limit]=100", &token).await;
    let body = reply.json();
    let data = body["data"].as_array().unwrap();
    assert!(data.len() >= 10, "seed jobs: {}", data.len());
    let job = &data[0];
    assert_eq!(job["type"], "job");
    assert_eq!(job["id"], job["attributes"]["jobId"].to_string());
    assert!(job["links"]["self"]["href"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/admin/jobs/{}", job["id"].as_str().unwrap())));
    assert!(job["links"]["file-lists"]["href"].is_string());
    assert!(job["links"]["try-logs"]["href"].is_string());
    for key in ["startTime", "endTime", "lastUpdateTime"] {
        let time = job["attributes"][key].as_str().unwrap();
        assert!(time.ends_with(".000Z") || time.len() == 24, "{key}: {time}");
        assert!(time.ends_with('Z') && time.len() == 24, "{key}: {time}");
    }
    let starts: Vec<&str> = data.iter().map(|job| job["attributes"]["startTime"].as_str().unwrap()).collect();
    let mut sorted = starts.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(starts, sorted);
    // Top-level jobs are their own parents; VMware children point at their parent.
    for job in data {
        let attributes = &job["attributes"];
        if attributes["policyType"] == "VMWARE"
            && attributes["clientName"].as_str().unwrap().starts_with("vm-")
        {
            assert_ne!(attributes["parentJobId"], attributes["jobId"]);
        } else {
            assert_eq!(attributes["parentJobId"], attributes["jobId"]);
        }
    }
}

#[tokio::test]
async fn offset_pagination_emits_page_and_pages() {
    let server = Server::start().await;
    let token = server.login().await;
    let all = server.jobs(&token, "").await;
    let first = server.get("/admin/jobs?page%5Blimit%5D=4", &token).await.json();
    let pagination = &first["meta"]["pagination"];
    assert_eq!(pagination["limit"], 4);
    assert_eq!(pagination["offset"], 0);
    assert_eq!(pagination["count"], all.len());
    assert_eq!(pagination["page"], 0);
    assert_eq!(pagination["pages"], all.len().div_ceil(4));
    assert_eq!(pagination["next"], 4);
    assert!(first["links"]["next"]["href"].is_string());
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = server
            .get(&format!("/admin/jobs?page%5boffset%5d={offset}&page%5blimit%5d=4"), &token)
            .await
            .json();
        seen.extend(ids(page["data"].as_array().unwrap()));
        match page["meta"]["pagination"]["next"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));
    let default = server.get("/admin/jobs", &token).await.json();
    assert_eq!(default["data"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn cursor_pagination_from_version_9() {
    let server = Server::start().await;
    let token = server.login().await;
    let all = server.jobs(&token, "").await;
    let mut seen = Vec::new();
    let mut path = "/admin/jobs?page[limit]=3".to_owned();
    let mut pages = 0;
    loop {
        let page = server.get_v(&path, &token, "9.0").await.json();
        let data = page["data"].as_array().unwrap();
        for job in data {
            assert!(job["meta"]["page"]["cursor"].is_string());
        }
        let pagination = &page["meta"]["pagination"];
        assert_eq!(pagination["limit"], 3);
        assert_eq!(pagination["rangeTruncated"], false);
        assert!(pagination.get("offset").is_none());
        seen.extend(ids(data));
        pages += 1;
        match pagination.get("next") {
            Some(next) => {
                let cursor = next.as_str().expect("next is an opaque string cursor");
                assert_eq!(cursor, data.last().unwrap()["meta"]["page"]["cursor"].as_str().unwrap());
                path = format!("/admin/jobs?page[limit]=3&page[after]={cursor}");
            }
            None => break,
        }
    }
    assert_eq!(seen, ids(&all));
    assert_eq!(pages, all.len().div_ceil(3));

    // page[before] walks back.
    let first = server.get_v("/admin/jobs?page[limit]=3", &token, "12.0").await.json();
    let cursor = first["meta"]["pagination"]["next"].as_str().unwrap().to_owned();
    let second =
        server.get_v(&format!("/admin/jobs?page[limit]=3&page[after]={cursor}"), &token, "12.0").await.json();
    let prev = second["meta"]["pagination"]["prev"].as_str().unwrap().to_owned();
    let back =
        server.get_v(&format!("/admin/jobs?page[limit]=3&page[before]={prev}"), &token, "12.0").await.json();
    assert_eq!(ids(back["data"].as_array().unwrap()), ids(first["data"].as_array().unwrap()));
    server.get_v("/admin/jobs?page[after]=zzz", &token, "9.0").await.assert_error(400);
}

#[tokio::test]
async fn filters_with_every_operator_and_encoding() {
    let server = Server::start().await;
    let token = server.login().await;
    let all = server.jobs(&token, "").await;
    let count =
        |predicate: &dyn Fn(&Value) -> bool| all.iter().filter(|job| predicate(&job["attributes"])).count();
    let median = all[all.len() / 2]["attributes"]["jobId"].as_u64().unwrap();
    let some_time = all[all.len() / 2]["attributes"]["startTime"].as_str().unwrap().to_owned();
    let cases: Vec<(String, usize)> = vec![
        ("jobType eq 'BACKUP'".into(), count(&|a| a["jobType"] == "BACKUP")),
        ("jobType ne 'BACKUP'".into(), count(&|a| a["jobType"] != "BACKUP")),
        (format!("jobId gt {median}"), count(&|a| a["jobId"].as_u64().unwrap() > median)),
        (format!("jobId ge {median}"), count(&|a| a["jobId"].as_u64().unwrap() >= median)),
        (format!("jobId lt {median}"), count(&|a| a["jobId"].as_u64().unwrap() < median)),
        (format!("jobId le {median}"), count(&|a| a["jobId"].as_u64().unwrap() <= median)),
        (format!("jobId eq {median}"), 1),
        (format!("jobId ne {median}"), all.len() - 1),
        (
            "contains(clientName,'client0')".into(),
            count(&|a| a["clientName"].as_str().unwrap().contains("client0")),
        ),
        (
            "startswith(clientName,'vm-')".into(),
            count(&|a| a["clientName"].as_str().unwrap().starts_with("vm-")),
        ),
        ("endswith(clientName,'.example.com')".into(), all.len()),
        (
            "contains(policyName,'Standard')".into(),
            count(&|a| a["policyName"].as_str().unwrap().contains("Standard")),
        ),
        ("state eq 'DONE' and status eq 0".into(), count(&|a| a["state"] == "DONE" && a["status"] == 0)),
        ("status gt 0".into(), count(&|a| a["status"].as_i64().unwrap() > 0)),
        (
            format!("startTime ge {some_time}"),
            count(&|a| a["startTime"].as_str().unwrap() >= some_time.as_str()),
        ),
        (
            format!("startTime lt '{some_time}'"),
            count(&|a| a["startTime"].as_str().unwrap() < some_time.as_str()),
        ),
        ("lastUpdateTime ge 2000-01-01T00:00:00Z".into(), all.len()),
        ("lastUpdateTime le 2000-01-01T00:00:00.123456Z".into(), 0),
        ("policyType eq 'VMWARE'".into(), count(&|a| a["policyType"] == "VMWARE")),
    ];
    for (filter, expected) in cases {
        let data = server.jobs(&token, &filter).await;
        assert_eq!(data.len(), expected, "{filter}");
    }
    // `+` as space and %27 quotes, as the curl and Go samples send it.
    let reply =
        server.get("/admin/jobs?filter=jobType+eq+%27BACKUP%27&page%5blimit%5d=100", &token).await.json();
    assert_eq!(reply["data"].as_array().unwrap().len(), count(&|a| a["jobType"] == "BACKUP"));
    let reply =
        server.get("/admin/jobs?filter=jobType%20eq%20'BACKUP'&page%5Blimit%5D=100", &token).await.json();
    assert_eq!(reply["data"].as_array().unwrap().len(), count(&|a| a["jobType"] == "BACKUP"));
}

#[tokio::test]
async fn unsupported_filters_name_the_field_or_operator() {
    let server = Server::start().await;
    let token = server.login().await;
    for (filter, named) in [
        ("bogusField eq 1", "bogusField"),
        ("policyName eq 'Standard_FS'", "'eq'"),
        ("jobType gt 'A'", "'gt'"),
        ("jobId eq 1 or jobId eq 2", "'or'"),
        ("substringof('x',clientName)", "substringof"),
        ("jobId eq 'x'", "'x'"),
        ("startTime ge notadate", "notadate"),
        ("jobType eq 'BACKUP", "unterminated"),
    ] {
        let reply = server.get(&format!("/admin/jobs?filter={}", encode(filter)), &token).await;
        let error = reply.assert_error(400);
        let text = error.to_string();
        assert!(text.contains(named), "{filter}: {text}");
    }
}

/// A request naming no version gets the newest shapes (API 14.0): cursor pagination with string cursors.
#[tokio::test]
async fn no_version_header_means_the_newest_version() {
    let server = Server::start().await;
    let token = server.login().await;
    let reply = server.send("GET", "/admin/jobs?page[limit]=2", &[("Authorization", &token)], None).await;
    assert_eq!(reply.header("content-type").unwrap(), vnd("14.0"));
    let page = reply.json();
    assert!(page["meta"]["pagination"]["next"].is_string(), "{page}");
    assert!(page["data"][0]["meta"]["page"]["cursor"].is_string(), "{page}");
    let running = server.handle.start_backup("Standard_FS", Some("INCR")).unwrap();
    let tries = server
        .send("GET", &format!("/admin/jobs/{}/try-logs", running[0]), &[("Authorization", &token)], None)
        .await
        .json();
    assert_eq!(
        tries["data"][0]["attributes"]["tryEndTime"], "1970-01-01T00:00:00.000Z",
        "a try not ended yet"
    );
}

#[tokio::test]
async fn one_job_and_its_logs() {
    let server = Server::start().await;
    let token = server.login().await;
    let all = server.jobs(&token, "jobType eq 'BACKUP' and status eq 0").await;
    let id = all[0]["id"].as_str().unwrap();
    let job = server.get(&format!("/admin/jobs/{id}"), &token).await.json();
    assert_eq!(job["data"]["id"], id);
    assert!(job["data"].get("meta").is_none());
    let job = server.get(&format!("/admin/jobs/{id}?meta=accessControlId"), &token).await.json();
    assert!(job["data"]["meta"]["accessControlId"].is_string());
    let files = server.get(&format!("/admin/jobs/{id}/file-lists"), &token).await.json();
    assert!(!files["data"]["attributes"]["fileList"].as_array().unwrap().is_empty());
    let tries = server.get(&format!("/admin/jobs/{id}/try-logs"), &token).await.json();
    let attempt = &tries["data"][0];
    assert_eq!(attempt["type"], "parsedTryLogResponse");
    let attributes = &attempt["attributes"];
    assert_eq!(attributes["tryNumber"], 1);
    assert_eq!(attributes["tryStatusCode"], 0);
    assert!(attributes["tryEndTime"].as_str().unwrap().ends_with(".000Z"), "{attempt}");
    let lines = attributes["tryLog"].as_array().unwrap();
    assert!(lines.len() >= 2 && lines.iter().all(|line| line["message"].is_string()), "{attempt}");
    let one = server.get(&format!("/admin/jobs/{id}/try-logs/1"), &token).await.json();
    assert_eq!(one["data"], *attempt, "one try is an object");
    server.get(&format!("/admin/jobs/{id}/try-logs/2"), &token).await.assert_error(404);

    // Progress logs page by offset; each entry's id is its offset, an integer.
    let logs = server.get(&format!("/admin/jobs/{id}/progress-logs?page[limit]=1"), &token).await.json();
    let entries = logs["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], 0);
    assert_eq!(entries[0]["type"], "getJobProgressEntryResponse");
    assert!(entries[0]["attributes"]["message"].is_string());
    assert_eq!(logs["meta"]["pagination"]["next"], 1);
    let second = server
        .get(&format!("/admin/jobs/{id}/progress-logs?page[limit]=1&page[offset]=1"), &token)
        .await
        .json();
    assert_eq!(second["data"][0]["id"], 1);
    server.get(&format!("/admin/jobs/{id}/progress-logs?page[limit]=101"), &token).await.assert_error(400);
    for path in [
        "/admin/jobs/999999",
        "/admin/jobs/999999/file-lists",
        "/admin/jobs/999999/try-logs",
        "/admin/jobs/999999/progress-logs",
    ] {
        server.get(path, &token).await.assert_error(404);
    }
}

#[tokio::test]
async fn cancel_suspend_resume_restart_and_delete() {
    let server = Server::start_with(nbwss_emulator::EmulatorConfig {
        clock_multiplier: 60.0,
        ..nbwss_emulator::EmulatorConfig::for_tests()
    })
    .await;
    let token = server.login().await;
    let backup = json!({"data": {"type": "backupRequest", "attributes": {"policyName": "Standard_FS", "scheduleName": "INCR"}}});
    let reply = server.call("POST", "/admin/manual-backup", &token, &backup).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let started = ids(reply.json()["data"].as_array().unwrap());
    assert_eq!(started.len(), 2);
    let (first, second) = (started[0], started[1]);
    let post = |path: String| {
        let server = &server;
        let token = token.clone();
        async move { server.send("POST", &path, &[("Authorization", &token)], None).await }
    };

    assert_eq!(post(format!("/admin/jobs/{first}/suspend")).await.status, 202);
    let state = server.get(&format!("/admin/jobs/{first}"), &token).await.json()["data"]["attributes"]
        ["state"]
        .clone();
    assert_eq!(state, "SUSPENDED");
    post(format!("/admin/jobs/{first}/suspend")).await.assert_error(400);
    assert_eq!(post(format!("/admin/jobs/{first}/resume")).await.status, 202);
    post(format!("/admin/jobs/{first}/resume")).await.assert_error(400);

    assert_eq!(post(format!("/admin/jobs/{first}/cancel")).await.status, 202);
    let job = server.get(&format!("/admin/jobs/{first}"), &token).await.json();
    assert_eq!(job["data"]["attributes"]["state"], "DONE");
    assert_eq!(job["data"]["attributes"]["status"], 150);
    post(format!("/admin/jobs/{first}/cancel")).await.assert_error(400);

    // A running job cannot be deleted or restarted; a done one can.
    server
        .send("DELETE", &format!("/admin/jobs/{second}"), &[("Authorization", &token)], None)
        .await
        .assert_error(400);
    post(format!("/admin/jobs/{second}/restart")).await.assert_error(400);
    let before: BTreeSet<u64> = ids(&server.jobs(&token, "").await).into_iter().collect();
    assert_eq!(post(format!("/admin/jobs/{first}/restart")).await.status, 202);
    let after: BTreeSet<u64> = ids(&server.jobs(&token, "").await).into_iter().collect();
    assert_eq!(after.len(), before.len() + 1);
    let reply =
        server.send("DELETE", &format!("/admin/jobs/{first}"), &[("Authorization", &token)], None).await;
    assert_eq!(reply.status, 202);
    server.get(&format!("/admin/jobs/{first}"), &token).await.assert_error(404);
    for action in ["cancel", "suspend", "resume", "restart"] {
        post(format!("/admin/jobs/424242/{action}")).await.assert_error(404);
    }
    assert_eq!(post(format!("/admin/jobs/{second}/cancel")).await.status, 202);
    let reply =
        server.send("DELETE", &format!("/admin/jobs/{second}"), &[("Authorization", &token)], None).await;
    assert_eq!(reply.status, 202);
}
