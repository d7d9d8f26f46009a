//! Login, logout, tokens, API keys and the CA certificate.

use serde_json::json;

use crate::util::{vnd, Server};

#[tokio::test]
async fn login_returns_201_with_a_token() {
    let server = Server::start().await;
    for body in [
        json!({"userName": "admin", "password": "password"}),
        json!({"userName": "admin", "password": "password", "domainType": "", "domainName": ""}),
        json!({"userName": "admin", "password": "password", "domainType": "unixpwd", "domainName": "nbu"}),
    ] {
        let reply = server
            .send("POST", "/login", &[("Content-Type", "application/json")], Some(&body.to_string()))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let login = reply.json();
        assert_eq!(login["tokenType"], "BEARER");
        assert_eq!(login["validity"], 86400);
        assert!(login["token"].as_str().unwrap().len() >= 32);
        assert!(reply.header("set-cookie").unwrap().starts_with("Authorization="));
    }
    let bad = json!({"userName": "admin", "password": "wrong"}).to_string();
    server.send("POST", "/login", &[("Content-Type", &vnd("1.0"))], Some(&bad)).await.assert_error(401);
    let unknown = json!({"userName": "nobody", "password": "password"}).to_string();
    server.send("POST", "/login", &[], Some(&unknown)).await.assert_error(401);
}

#[tokio::test]
async fn tokens_are_accepted_raw_or_with_bearer() {
    let server = Server::start().await;
    let token = server.login().await;
    assert_eq!(server.get("/admin/jobs", &token).await.status, 200);
    assert_eq!(server.get("/admin/jobs", &format!("Bearer {token}")).await.status, 200);
    let cookie = format!("theme=dark; Authorization={token}");
    assert_eq!(server.send("GET", "/admin/jobs", &[("Cookie", &cookie)], None).await.status, 200);
    server.get("/admin/jobs", "not-a-token").await.assert_error(401);
    server.send("GET", "/admin/jobs", &[], None).await.assert_error(401);
    server.send("GET", "/catalog/images", &[], None).await.assert_error(401);
    server.send("GET", "/config/policies", &[], None).await.assert_error(401);
}

#[tokio::test]
async fn logout_without_version_headers_ends_the_session() {
    let server = Server::start().await;
    let token = server.login().await;
    let reply = server.send("POST", "/logout", &[("Authorization", &token)], None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text.is_empty());
    server.get("/admin/jobs", &token).await.assert_error(401);
    server.send("POST", "/logout", &[("Authorization", &token)], None).await.assert_error(401);
    server.send("POST", "/logout", &[], None).await.assert_error(401);
}

#[tokio::test]
async fn cacert_answers_both_shapes_without_headers() {
    let server = Server::start().await;
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
    let response = client.get(format!("{}/security/cacert", server.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let pem = server.handle.certificate_pem();
    assert_eq!(body["webRootCert"], pem.as_str());
    assert_eq!(body["cacert"][0], pem.as_str());
    let details = &body["webRootCertificateData"][0];
    assert_eq!(details["caCert"], pem.as_str());
    assert_eq!(details["caCertDetails"]["subjectCN"], "localhost");
    assert_eq!(details["caCertDetails"]["sha-256Fingerprint"].as_str().unwrap().len(), 32 * 3 - 1);
    assert!(body["caCertificateData"].is_array());
}

#[tokio::test]
async fn api_keys_are_created_listed_used_and_deleted() {
    let server = Server::start().await;
    let token = server.login().await;
    let request = json!({"data": {"type": "apiKeyCreationRequest", "attributes": {"expireAfterDays": "P30D", "description": "ci"}}});
    let reply = server.call("POST", "/security/api-keys", &token, &request).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let created = reply.json();
    assert_eq!(created["data"]["type"], "apiKeyCreationResponse");
    let tag = created["data"]["id"].as_str().unwrap().to_owned();
    let key = created["data"]["attributes"]["apiKey"].as_str().unwrap().to_owned();
    assert!(created["data"]["attributes"]["expiryDateTime"].as_str().unwrap().ends_with(".000Z"));

    // The key works raw in Authorization, and through /login with domainName vrts.apikey.
    assert_eq!(server.get("/admin/jobs", &key).await.status, 200);
    let login = json!({"userName": "", "password": key, "domainType": "vx", "domainName": "vrts.apikey"});
    let reply =
        server.send("POST", "/login", &[("Content-Type", &vnd("3.0"))], Some(&login.to_string())).await;
    assert_eq!(reply.status, 201, "{}", reply.text);

    let list = server.get("/security/api-keys", &token).await.json();
    assert!(list["data"].as_array().unwrap().iter().any(|k| k["id"] == tag.as_str()));
    let one = server.get(&format!("/security/api-keys/{tag}"), &token).await.json();
    assert_eq!(one["data"]["attributes"]["userName"], "admin");
    assert_eq!(one["data"]["attributes"]["description"], "ci");

    let reply =
        server.send("DELETE", &format!("/security/api-keys/{tag}"), &[("Authorization", &token)], None).await;
    assert_eq!(reply.status, 204);
    server.get(&format!("/security/api-keys/{tag}"), &token).await.assert_error(404);
    server
        .send("DELETE", &format!("/security/api-keys/{tag}"), &[("Authorization", &token)], None)
        .await
        .assert_error(404);
    server.get("/admin/jobs", &key).await.assert_error(401);

    for bad in [
        json!({"data": {"type": "apiKeyCreationRequest", "attributes": {"expireAfterDays": "30"}}}),
        json!({"data": {"type": "apiKeyCreationRequest", "attributes": {}}}),
        json!({"data": {"type": "apiKeyCreationRequest", "attributes": {"expireAfterDays": 30}}}),
        json!({"data": {"type": "somethingElse", "attributes": {"expireAfterDays": "P1D"}}}),
    ] {
        server.call("POST", "/security/api-keys", &token, &bad).await.assert_error(400);
    }
}

#[tokio::test]
async fn the_handle_makes_credentials_for_tests() {
    let server = Server::start().await;
    let key = server.handle.create_api_key("admin");
    assert_eq!(server.get("/admin/jobs", &key).await.status, 200);
    let token = server.handle.create_token("someone");
    assert_eq!(server.get("/admin/jobs", &token).await.status, 200);
    server.handle.add_user("operator", "secret");
    let body = json!({"userName": "operator", "password": "secret"}).to_string();
    assert_eq!(server.send("POST", "/login", &[], Some(&body)).await.status, 201);
}
