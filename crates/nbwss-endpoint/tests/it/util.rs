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
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            endpoint.websocket_url(),
            None,
            false,
            Some(Connector::Rustls(client_tls(endpoint.certificate_pem()))),
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

    /// The text of the next NBWSS message, as sent; `None` when the connection closes.
    pub async fn recv_text(&mut self) -> Option<String> {
        loop {
            match self.socket.next().await? {
                Ok(Frame::Text(text)) => return Some(text.as_str().to_owned()),
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

/// A client that speaks TLS and raw bytes, to send what no well-behaved library would: half a request,
/// a frame header announcing 14 MB, fragments, reserved bits. Connects from `source` (any 127.x.y.z
/// address reaches the loopback listener, so tests can play many source addresses).
pub struct RawClient {
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
}

/// What the endpoint did to a raw client.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code, and its reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Dropped,
}

impl RawClient {
    /// A TCP connection from `source` (port chosen by the system), nothing sent.
    pub async fn tcp(endpoint: &EndpointHandle, source: std::net::Ipv4Addr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((source, 0))).unwrap();
        socket.connect(endpoint.local_addr()).await.unwrap()
    }

    /// A TLS connection from `source` that trusts the endpoint's certificate; nothing sent on it yet.
    pub async fn tls(endpoint: &EndpointHandle, source: std::net::Ipv4Addr) -> std::io::Result<Self> {
        let tcp = Self::tcp(endpoint, source).await;
        let connector = tokio_rustls::TlsConnector::from(client_tls(endpoint.certificate_pem()));
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        Ok(Self { stream: connector.connect(name, tcp).await? })
    }

    /// A TLS connection that has sent the WebSocket upgrade; returns the response head.
    pub async fn upgraded(endpoint: &EndpointHandle, source: std::net::Ipv4Addr) -> (Self, String) {
        let mut client = Self::tls(endpoint, source).await.unwrap();
        let head = client.upgrade("").await;
        (client, head)
    }

    /// Sends the WebSocket upgrade request for the default path (with `extra` header lines) and reads the
    /// response head.
    pub async fn upgrade(&mut self, extra: &str) -> String {
        let path = nbwss_endpoint::DEFAULT_WEBSOCKET_PATH;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        self.send_raw(request.as_bytes()).await;
        self.read_head().await
    }

    /// Reads an HTTP response head (up to the blank line), byte by byte so that nothing after it is lost.
    pub async fn read_head(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        within(async {
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                if self.stream.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
        })
        .await;
        String::from_utf8(head).unwrap()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Sends bytes, reporting a failure (the endpoint closed) instead of panicking.
    pub async fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        self.send_raw(&client_frame(opcode, fin, payload)).await;
    }

    /// Reads frames until a close frame or the end of the connection (pongs and other frames skipped).
    pub async fn ending(&mut self) -> Ending {
        within(async {
            loop {
                match self.read_frame().await {
                    Some((8, payload)) => {
                        let code =
                            payload.get(..2).map_or(1005, |code| u16::from_be_bytes([code[0], code[1]]));
                        let reason =
                            String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                        return Ending::Closed(code, reason);
                    }
                    Some(_) => continue,
                    None => return Ending::Dropped,
                }
            }
        })
        .await
    }

    /// The next frame the endpoint sends (opcode, payload); `None` at the end of the connection.
    pub async fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        let mut header = [0u8; 2];
        self.stream.read_exact(&mut header).await.ok()?;
        let length = match header[1] & 0x7F {
            126 => u64::from(self.stream.read_u16().await.ok()?),
            127 => self.stream.read_u64().await.ok()?,
            short => u64::from(short),
        };
        let mut payload = vec![0u8; usize::try_from(length).unwrap()];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((header[0] & 0x0F, payload))
    }
}

/// A masked client frame: FIN bit, opcode, 7/16/64-bit length, mask, masked payload.
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![opcode | if fin { 0x80 } else { 0 }];
    frame_length(&mut frame, payload.len() as u64);
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ mask[index % 4]));
    frame
}

/// Appends the masked-length bytes of a client frame header announcing `length`.
pub fn frame_length(frame: &mut Vec<u8>, length: u64) {
    match length {
        0..=125 => frame.push(0x80 | length as u8),
        126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&length.to_be_bytes());
        }
    }
}

/// A rustls client configuration trusting exactly `certificate_pem`.
pub fn client_tls(certificate_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(certificate_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The value of one metric sample in `/metrics` text (0 when absent).
pub async fn metric(harness: &Harness, sample: &str) -> f64 {
    harness
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}
