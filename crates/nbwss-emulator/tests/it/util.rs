//! Test helpers: an emulator on port 0 with a client that trusts exactly its certificate.

use std::future::Future;
use std::time::Duration;

use nbwss_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// The media type the samples send, with a version.
pub fn vnd(version: &str) -> String {
    format!("application/vnd.netbackup+json;version={version}")
}

/// A running emulator and an HTTPS client for it.
pub struct Server {
    pub handle: EmulatorHandle,
    pub client: reqwest::Client,
    pub base: String,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|error| {
            panic!("status {} body is not JSON ({error}): {:?}", self.status, self.text)
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|value| value.to_str().unwrap().to_owned())
    }

    /// Asserts the status and that the body is NetBackup's JSON error.
    pub fn assert_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        assert!(body["errorCode"].is_i64(), "no errorCode in {body}");
        assert!(body["errorMessage"].is_string(), "no errorMessage in {body}");
        // A list of strings; the SLP API gives an object from error code to text.
        let details = &body["errorDetails"];
        assert!(details.is_array() || details.is_object(), "no errorDetails in {body}");
        body
    }
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(EmulatorConfig::for_tests()).await
    }

    pub async fn start_with(config: EmulatorConfig) -> Self {
        let handle = Emulator::start(config).await.expect("the emulator starts");
        let certificate = reqwest::Certificate::from_pem(handle.certificate_pem().as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(certificate)
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let base = handle.base_url();
        Self { handle, client, base }
    }

    /// Sends a request with exactly these headers (reqwest adds `accept: */*` only when none is given).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect("the request is answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Reply { status, headers, text }
    }

    /// GET with a token and the version-1.0 `Content-Type` the Python samples send.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, &[("Authorization", token), ("Content-Type", &vnd("8.0"))], None).await
    }

    /// GET at a given version in `Accept`.
    pub async fn get_v(&self, path: &str, token: &str, version: &str) -> Reply {
        self.send("GET", path, &[("Authorization", token), ("Accept", &vnd(version))], None).await
    }

    /// A request with a JSON body.
    pub async fn call(&self, method: &str, path: &str, token: &str, body: &Value) -> Reply {
        let text = body.to_string();
        self.send(method, path, &[("Authorization", token), ("Content-Type", &vnd("8.0"))], Some(&text)).await
    }

    /// Logs in as the test user over HTTP.
    pub async fn login(&self) -> String {
        let body = json!({"userName": "admin", "password": "password"}).to_string();
        let reply = self.send("POST", "/login", &[("Content-Type", &vnd("1.0"))], Some(&body)).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json()["token"].as_str().unwrap().to_owned()
    }

    /// All jobs (offset pagination, up to 100).
    pub async fn jobs(&self, token: &str, filter: &str) -> Vec<Value> {
        let mut path = "/admin/jobs?page[limit]=100".to_owned();
        if !filter.is_empty() {
            path.push_str(&format!("&filter={}", encode(filter)));
        }
        let reply = self.get(&path, token).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["data"].as_array().unwrap().clone()
    }
}

/// Percent-encodes a query value (spaces as %20, quotes as %27).
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Waits until `probe` returns something, failing after a generous deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
