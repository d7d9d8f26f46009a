//! The in-test NBWSS client, an endpoint started on port 0, and waiting on conditions with a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nbwss_endpoint::{Endpoint, EndpointConfig, EndpointHandle};
use nbwss_protocol::{
    Body, Codec, CommandRequest, CommandResponse, ConnectRequest, Message, NotificationGroup, Secret,
};
use rustls_pki_types::pem::PemObject;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// The longest any test waits for a condition.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running endpoint with an API key and an HTTPS client trusting its certificate.
pub struct Harness {
    pub endpoint: EndpointHandle,
    pub api_key: String,
    pub http: reqwest::Client,
    pub _dir: TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut EndpointConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EndpointConfig::new(dir.path());
        adjust(&mut config);
        let endpoint = Endpoint::start(config).await.unwrap();
        let api_key = endpoint.create_api_key("tests").unwrap();
        let http = http_client(endpoint.certificate_pem());
        Self { endpoint, api_key, http, _dir: dir }
    }

    /// A registered primary server's token.
    pub fn token(&self, name: &str) -> Secret {
        self.endpoint.create_token(name, "sg1", 1).unwrap().token
    }

    /// `GET path` with the API key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.endpoint.url()))
            .header("X-NBWSS-API-Key", &self.api_key)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.endpoint.url())).send().await.unwrap().text().await.unwrap()
    }

    /// The entry of `name` in `GET /api/v1/primaries`.
    pub async fn primary(&self, name: &str) -> Value {
        let list = self.get_json("/api/v1/primaries").await;
        list["primaries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits until `name` is connected from `remote` (or at all).
    pub async fn wait_connected(&self, name: &str, connected: bool) {
        eventually(|| async { self.primary(name).await["connected"] == connected }).await;
    }

    /// A connected primary server that answers every COMMAND by echoing it (see [`echo`]).
    pub async fn echo_primary(&self, name: &str) -> tokio::task::JoinHandle<()> {
        let primary = Primary::connect(&self.endpoint, &self.token(name)).await.unwrap();
        self.wait_connected(name, true).await;
        tokio::spawn(primary.answer(echo))
    }

    pub fn relay_url(&self, name: &str, path: &str) -> String {
        format!("{}/api/v1/primaries/{name}/netbackup/{path}", self.endpoint.url())
    }

    /// Starts a relayed GET in the background (with the API key), for tests that answer it from the
    /// primary server's side while it waits.
    pub fn spawn_relay_get(
        &self,
        name: &str,
        path: &str,
    ) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
        tokio::spawn(
            self.http.get(self.relay_url(name, path)).header("X-NBWSS-API-Key", &self.api_key).send(),
        )
    }
}

/// An HTTPS client that trusts the endpoint's certificate and nothing else.
pub fn http_client(certificate_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certificate_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap()
}

/// Waits until `condition` holds, polling, for at most [`DEADLINE`].
pub async fn eventually<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Awaits `future` for at most [`DEADLINE`].
pub async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future).await.expect("did not finish within the deadline")
}

/// The in-test NBWSS client: a WebSocket to the endpoint, speaking NBWSS messages.
pub struct Primary {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    codec: Codec,
}

/// What the endpoint did with our CONNECT.
#[derive(Debug)]
pub enum Connected {
    Valid(Primary),
    Refused(Primary),
}

impl Primary {
    /// Opens the WebSocket (trusting the endpoint's certificate) without sending anything.
    pub async fn open(endpoint: &EndpointHandle) -> Result<Self, tungstenite::Error> {
        let mut roots = rustls::RootCertStore::empty();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(endpoint.certificate_pem().as_bytes());
        roots.add(der.unwrap()).unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            endpoint.websocket_url(),
            None,
            false,
            Some(Connector::Rustls(Arc::new(config))),
        )
        .await?;
        Ok(Self { socket, codec: Codec::default() })
    }

    /// Opens the WebSocket and sends CONNECT with `token`; returns what the endpoint answered.
    pub async fn handshake(endpoint: &EndpointHandle, token: &Secret) -> Connected {
        let mut primary = Self::open(endpoint).await.unwrap();
        let request = Message::new(Body::ConnectRequest(ConnectRequest { token: token.clone() }));
        primary.send(&request).await;
        let answer = within(primary.recv()).await.expect("a CONNECT RESPONSE");
        assert_eq!(answer.id, request.id, "CONNECT RESPONSE carries the request's id");
        match answer.body {
            Body::ConnectResponse(response) if response.valid => Connected::Valid(primary),
            Body::ConnectResponse(_) => Connected::Refused(primary),
            other => panic!("expected CONNECT RESPONSE, got {other:?}"),
        }
    }

    /// Connects with a token that must be accepted.
    pub async fn connect(endpoint: &EndpointHandle, token: &Secret) -> Option<Self> {
        match Self::handshake(endpoint, token).await {
            Connected::Valid(primary) => Some(primary),
            Connected::Refused(_) => None,
        }
    }

    pub async fn send(&mut self, message: &Message) {
        self.send_text(self.codec.encode(message)).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Frame::Text(text.into())).await.unwrap();
    }

    /// The next NBWSS message; `None` when the connection closes.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            match self.socket.next().await? {
                Ok(Frame::Text(text)) => return Some(self.codec.decode(text.as_str()).unwrap()),
                Ok(Frame::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Reads until the endpoint closes; returns the close code it sent.
    pub async fn closed_with(&mut self) -> Option<u16> {
        within(async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Frame::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
    }

    /// The next COMMAND REQUEST (its id and payload).
    pub async fn next_command(&mut self) -> (String, CommandRequest) {
        let message = within(self.recv()).await.expect("a COMMAND REQUEST");
        match message.body {
            Body::CommandRequest(request) => (message.id, request),
            other => panic!("expected COMMAND REQUEST, got {other:?}"),
        }
    }

    pub async fn respond(&mut self, id: &str, response: CommandResponse) {
        self.send(&Message::with_id(id, Body::CommandResponse(response))).await;
    }

    /// Sends a NOTIFICATION REQUEST with `id` and waits for its acknowledgement.
    pub async fn notify(&mut self, id: &str, groups: Vec<NotificationGroup>) -> Message {
        self.send(&Message::with_id(id, Body::NotificationRequest(groups))).await;
        within(self.recv()).await.expect("an acknowledgement")
    }

    /// Answers every COMMAND with `answer` until the connection closes.
    pub async fn answer(mut self, answer: fn(&CommandRequest) -> CommandResponse) {
        while let Some(message) = self.recv().await {
            if let Body::CommandRequest(request) = &message.body {
                let response = answer(request);
                let reply = Message::with_id(message.id.clone(), Body::CommandResponse(response));
                if self.socket.send(Frame::Text(self.codec.encode(&reply).into())).await.is_err() {
                    return;
                }
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "".into() }))
            .await;
    }
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Primary")
    }
}

/// A primary server that echoes the request: status from `x-test-status` (default 200), header
/// `x-test-echo: yes`, body = the COMMAND as JSON.
pub fn echo(request: &CommandRequest) -> CommandResponse {
    let status = request.headers.get("x-test-status").and_then(|s| s.parse().ok()).unwrap_or(200);
    let headers: serde_json::Map<String, Value> =
        request.headers.iter().map(|(name, value)| (name.to_owned(), Value::from(value))).collect();
    let body = json!({
        "uri": request.uri,
        "method": request.method.as_str(),
        "headers": headers,
        "parameters": request.parameters,
    });
    let mut response =
        CommandResponse { status_code: status, headers: Default::default(), body: body.to_string() };
    response.headers.set("content-type", "application/vnd.netbackup+json;version=1.0");
    response.headers.set("x-test-echo", "yes");
    response
}
