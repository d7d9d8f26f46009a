//! The request shapes of the real clients (Veritas samples, `docs/netbackup-rest-api.md` §6), header quirks included.

use chrono::TimeDelta;
use nbwss_emulator::EmulatorConfig;
use serde_json::json;

use crate::util::{eventually, vnd, Server};

/// Python snippets: login with `Content-Type` v1.0 and `Accept: */*`, then GETs with the same.
#[tokio::test]
async fn python_snippets_get_jobs_images_and_alerts() {
    let server =
        Server::start_with(EmulatorConfig { failure_rate: 1.0, ..EmulatorConfig::for_tests() }).await;
    let v1 = vnd("1.0");
    let body =
        json!({"userName": "admin", "password": "password", "domainName": "", "domainType": ""}).to_string();
    let reply = server.send("POST", "/login", &[("Content-Type", &v1), ("Accept", "*/*")], Some(&body)).await;
    assert_eq!(reply.status, 201);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let headers = [("Content-Type", v1.as_str()), ("Authorization", token.as_str()), ("Accept", "*/*")];

    let jobs = server.send("GET", "/admin/jobs", &headers, None).await;
    assert_eq!(jobs.header("content-type").unwrap(), v1);
    let jobs = jobs.json();
    let rows = jobs["data"].as_array().unwrap();
    assert!(!rows.is_empty(), "the job table needs rows");
    for job in rows {
        let attributes = &job["attributes"];
        assert!(attributes["jobId"].is_u64() && attributes["jobType"].is_string());
        assert!(attributes["state"].is_string() && attributes["status"].is_i64());
    }

    let images = server.send("GET", "/catalog/images", &headers, None).await.json();
    let rows = images["data"].as_array().unwrap();
    assert!(!rows.is_empty(), "the image table needs rows");
    for image in rows {
        assert!(image["id"].is_string());
        for key in ["policyName", "clientName", "backupTime"] {
            assert!(image["attributes"][key].is_string(), "{key}");
        }
    }

    // get_nb_alerts.py reads params of job alerts.
    let ids = server.handle.start_backup("Standard_DB", None).unwrap();
    eventually("the failing job to end", || async {
        let job = server.send("GET", &format!("/admin/jobs/{}", ids[0]), &headers, None).await.json();
        (job["data"]["attributes"]["state"] == "DONE").then_some(())
    })
    .await;
    let alerts = server.send("GET", "/manage/alerts", &headers, None).await.json();
    let alert = &alerts["data"][0]["attributes"];
    assert!(alert["title"].is_string() && alert["createdDateTime"].is_string());
    for key in ["jobId", "status", "errorMsg", "policyName", "policyType"] {
        assert!(!alert["params"][key].is_null(), "{key}");
    }
}

/// apikey_usage.py and ClientBackup.py3 send an API key as the whole `Authorization` header.
#[tokio::test]
async fn client_backup_py3_with_an_api_key() {
    let server = Server::start().await;
    let key = server.handle.create_api_key("admin");
    let v4 = vnd("4.0");
    let reply = server
        .send("GET", "/admin/jobs", &[("Authorization", &key), ("Content-Type", &vnd("3.0"))], None)
        .await;
    assert_eq!(reply.status, 200);

    let reply = server
        .send("GET", "/config/policies/Standard_FS", &[("Authorization", &key), ("Accept", &v4)], None)
        .await;
    assert_eq!(reply.status, 200);
    let policy = reply.json();
    let schedules = policy["data"]["attributes"]["policy"]["schedules"].as_array().unwrap().clone();
    for name in ["FULL", "INCR"] {
        let schedule = schedules.iter().find(|s| s["scheduleName"] == name).unwrap();
        assert!(schedule["frequencySeconds"].as_i64().unwrap() > 0);
    }

    let since = (server.handle.now() - TimeDelta::days(2)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let path = format!(
        "/catalog/images?page%5Blimit%5D=50&filter=clientName%20eq%20'client01.example.com'%20and%20backupTime%20ge%20{since}"
    );
    let reply = server.send("GET", &path, &[("Authorization", &key)], None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for image in reply.json()["data"].as_array().unwrap() {
        let backup_time = image["attributes"]["backupTime"].as_str().unwrap();
        chrono::NaiveDateTime::parse_from_str(backup_time, "%Y-%m-%dT%H:%M:%S.000Z")
            .expect("strptime format of the script");
    }

    let body = json!({"data": {"type": "backupRequest", "attributes": {
        "policyName": "Standard_FS", "scheduleName": "FULL", "clientName": "client01.example.com"}}});
    let reply = server
        .send(
            "POST",
            "/admin/manual-backup",
            &[("Authorization", &key), ("Content-Type", &v4)],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let data = reply.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1);
    assert!(data[0]["id"].is_string());
}

/// Perl netbackup.pm: login and GETs with `Content-Type` v1.0, logout with no version header at all.
#[tokio::test]
async fn perl_logout_without_headers() {
    let server = Server::start().await;
    let v1 = vnd("1.0");
    let body = json!({"userName": "admin", "password": "password"}).to_string();
    let reply = server.send("POST", "/login", &[("Content-Type", &v1)], Some(&body)).await;
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let reply = server
        .send("GET", "/catalog/images", &[("Content-Type", &v1), ("Authorization", &token)], None)
        .await;
    assert_eq!(reply.status, 200);
    let reply = server.send("POST", "/logout", &[("Authorization", &token)], None).await;
    assert_eq!(reply.status, 200);
}

/// curl samples: `content-type: application/json`, `+` spaces, lower-case `%5b`.
#[tokio::test]
async fn curl_samples() {
    let server = Server::start().await;
    let body =
        json!({"userName": "admin", "password": "password", "domainName": "d", "domainType": "unixpwd"})
            .to_string();
    let reply = server.send("POST", "/login", &[("content-type", "application/json")], Some(&body)).await;
    assert_eq!(reply.status, 201);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let headers = [("content-type", "application/json"), ("authorization", token.as_str())];
    let reply = server
        .send("GET", "/admin/jobs?filter=jobType+eq+%27BACKUP%27&page%5blimit%5d=10", &headers, None)
        .await;
    let jobs = reply.json()["data"].as_array().unwrap().clone();
    assert!(!jobs.is_empty() && jobs.len() <= 10);
    assert!(jobs.iter().all(|job| job["attributes"]["jobType"] == "BACKUP"));
    let reply = server
        .send("GET", "/catalog/images?filter=policyType+eq+%27Standard%27&page%5blimit%5d=10", &headers, None)
        .await;
    let images = reply.json()["data"].as_array().unwrap().clone();
    assert!(images.iter().all(|image| image["attributes"]["policyType"] == "Standard"));
}

/// The Go sample misspells the header as `ContentType`, so its GET carries no version.
#[tokio::test]
async fn go_sample_with_the_content_type_typo() {
    let server = Server::start().await;
    let body =
        json!({"userName": "admin", "password": "password", "domainName": "d", "domainType": "unixpwd"})
            .to_string();
    let reply = server.send("POST", "/login", &[("Content-Type", &vnd("1.0"))], Some(&body)).await;
    assert_eq!(reply.status, 201);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    let headers = [("ContentType", vnd("1.0")), ("Authorization", token)];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = server
        .send("GET", "/admin/jobs?filter=jobType+eq+%27BACKUP%27&page%5Blimit%5D=10", &headers, None)
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type").unwrap(), vnd(nbwss_emulator::DEFAULT_API_VERSION));
    assert!(reply.json()["data"].is_array());
}

/// The Node samples fetch the CA with no headers, then parse each response chunk as JSON, so a default
/// image page must stay small.
#[tokio::test]
async fn node_samples() {
    let server = Server::start().await;
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let cacert: serde_json::Value =
        client.get(format!("{}/security/cacert", server.base)).send().await.unwrap().json().await.unwrap();
    let pem = cacert["webRootCert"].as_str().unwrap();
    // The downloaded certificate is enough to verify the server by name.
    let pinned = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", server.handle.local_addr())
        .build()
        .unwrap();
    let port = server.handle.local_addr().port();
    let body = json!({"userName": "admin", "password": "password"}).to_string();
    let login = pinned
        .post(format!("https://localhost:{port}/netbackup/login"))
        .header("Content-Type", vnd("1.0"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201);
    let token = login.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let headers = [("Content-Type", vnd("1.0")), ("Authorization", token)];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let images = server.send("GET", "/catalog/images", &headers, None).await;
    assert_eq!(images.status, 200);
    assert!(images.text.len() < 16 * 1024, "default image page is {} bytes", images.text.len());
    let mappings = server.send("GET", "/config/hosts/hostmappings", &headers, None).await;
    assert_eq!(mappings.status, 200);
    let hosts = mappings.json();
    assert!(hosts["hosts"].as_array().unwrap().iter().all(|host| host["hostMappings"].is_array()), "{hosts}");
}

/// `/config/hosts` is not JSON:API, and the vmservers calls of the NBWSS guide's examples work.
#[tokio::test]
async fn hosts_and_vm_servers() {
    let server = Server::start().await;
    let token = server.login().await;
    let hosts = server.get("/config/hosts", &token).await.json();
    let list = hosts["hosts"].as_array().unwrap();
    assert!(list.iter().any(|h| h["nbuHostType"] == "PRIMARY_SERVER"));
    assert!(list.iter().any(|h| h["hostName"] == "client01.example.com" && h["nbuHostType"] == "CLIENT"));
    let one = server.get("/config/hosts?filter=hostName%20eq%20'client01.example.com'", &token).await.json();
    assert_eq!(one["hosts"].as_array().unwrap().len(), 1);
    let uuid = one["hosts"][0]["uuid"].as_str().unwrap().to_owned();
    assert_eq!(
        server.get(&format!("/config/hosts/{uuid}"), &token).await.json()["hostName"],
        "client01.example.com"
    );
    let configurations = server.get(&format!("/config/hosts/{uuid}/configurations"), &token).await.json();
    assert!(!configurations["data"].as_array().unwrap().is_empty());
    assert_eq!(
        server.get(&format!("/config/hosts/{uuid}/configurations/CLIENT_NAME"), &token).await.status,
        200
    );
    server.get(&format!("/config/hosts/{uuid}/configurations/NOPE"), &token).await.assert_error(404);
    server.get("/config/hosts/nope", &token).await.assert_error(404);
    server.get("/config/hosts?filter=bogus%20eq%201", &token).await.assert_error(400);

    // The guide's COMMAND example: a flat body with Content-Type v1.0, then plain application/json (8.0).
    let body = r#"{"serverName": "vcenterServer1", "proxyServerName": "","vmType": "VMWARE_VIRTUAL_CENTER_SERVER","userId": "administrator", "password": "password@123","port": 0 }"#;
    let reply = server
        .send(
            "POST",
            "/config/servers/vmservers",
            &[("Content-Type", &vnd("1.0")), ("Authorization", &token)],
            Some(body),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(reply.text.is_empty());
    let again = server
        .send(
            "POST",
            "/config/servers/vmservers",
            &[("Content-Type", "application/json"), ("Authorization", &token)],
            Some(body),
        )
        .await;
    again.assert_error(409);
    let one = server.get("/config/servers/vmservers/vcenterServer1", &token).await.json();
    assert_eq!(one["data"]["attributes"]["vmServer"]["vmType"], "VMWARE_VIRTUAL_CENTER_SERVER");
    assert_eq!(one["data"]["attributes"]["vmServer"]["password"], "", "the password is never shown");
    let list = server.get("/config/servers/vmservers", &token).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    server.get("/config/servers/vmservers/vCenter2.domain.com", &token).await.assert_error(404);
    let missing = r#"{"serverName": "x", "vmType": "VMWARE_VIRTUAL_CENTER_SERVER", "userId": "u"}"#;
    server
        .send("POST", "/config/servers/vmservers", &[("Authorization", &token)], Some(missing))
        .await
        .assert_error(400);
    server.send("GET", "/config/servers/vmservers", &[], None).await.assert_error(401);
}
