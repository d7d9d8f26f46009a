//! Test doubles over real sockets: a wss endpoint, an HTTPS primary server, an HTTP CONNECT proxy, and a
//! way to start the service. Everything binds 127.0.0.1:0; waits are conditions with deadlines.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use nbwss_protocol::{
    Body, Codec, CommandRequest, CommandResponse, ConnectResponse, HostObject, Message, Method, Properties,
    Secret,
};
use nbwss_service::{AdminClient, Service, ServiceConfig, ServiceHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if condition().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Awaits `future` for at most [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A self-signed certificate and key for 127.0.0.1/localhost.
pub fn certificate() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

fn acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    let config = nbwss_service::tls_server_config(cert_pem, key_pem).unwrap();
    let mut config = config;
    config.alpn_protocols.clear();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// How the endpoint answers the next connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// CONNECT answered `valid: true`, then messages flow.
    Valid,
    /// CONNECT answered `valid: false`.
    Invalid,
    /// CONNECT never answered.
    Silent,
    /// CONNECT answered with another id.
    WrongId,
    /// CONNECT answered `valid: true`, then the socket is never read again (so no pongs).
    Freeze,
    /// A COMMAND (id `EARLY`) sent before CONNECT is answered `valid: true`.
    CommandFirst,
}

/// One connection the endpoint accepted.
pub struct Peer {
    /// The token presented in CONNECT.
    pub token: String,
    /// Whether CONNECT was answered `valid: true`.
    pub accepted: bool,
    /// How CONNECT was answered.
    pub mode: Mode,
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<WsMessage>>,
    outgoing: mpsc::UnboundedSender<WsMessage>,
    closed: watch::Receiver<Option<Option<u16>>>,
    pings: Arc<AtomicUsize>,
    codec: Codec,
}

impl Peer {
    /// Sends raw text.
    pub fn send_text(&self, text: &str) {
        let _ = self.outgoing.send(WsMessage::text(text.to_owned()));
    }

    /// Sends raw binary.
    pub fn send_binary(&self, bytes: Vec<u8>) {
        let _ = self.outgoing.send(WsMessage::Binary(bytes.into()));
    }

    /// Sends a COMMAND and returns its id.
    pub fn send_command(&self, request: CommandRequest) -> String {
        let message = Message::new(Body::CommandRequest(request));
        self.send_text(&self.codec.encode(&message));
        message.id
    }

    /// The next text message from the service.
    pub async fn recv(&self) -> Message {
        let mut incoming = self.incoming.lock().await;
        loop {
            match within("a message from the service", incoming.recv()).await {
                Some(WsMessage::Text(text)) => return Codec::new(usize::MAX).decode(&text).unwrap(),
                Some(_) => continue,
                None => panic!("connection closed while waiting for a message"),
            }
        }
    }

    /// The next text message from the service, or `None` once the connection has ended (no deadline).
    pub async fn next_message(&self) -> Option<Message> {
        let mut incoming = self.incoming.lock().await;
        loop {
            match incoming.recv().await? {
                WsMessage::Text(text) => return Codec::new(usize::MAX).decode(&text).ok(),
                _ => continue,
            }
        }
    }

    /// The next COMMAND RESPONSE (id, payload).
    pub async fn recv_response(&self) -> (String, CommandResponse) {
        let message = self.recv().await;
        match message.body {
            Body::CommandResponse(response) => (message.id, response),
            other => panic!("expected a COMMAND RESPONSE, got {other:?}"),
        }
    }

    /// Sends a COMMAND and waits for its response.
    pub async fn command(&self, request: CommandRequest) -> CommandResponse {
        let id = self.send_command(request);
        let (got, response) = self.recv_response().await;
        assert_eq!(got, id);
        response
    }

    /// Closes from the endpoint's side.
    pub fn close(&self, code: u16) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: "test".into() };
        let _ = self.outgoing.send(WsMessage::Close(Some(frame)));
    }

    /// Waits until the connection ends; the close code the service sent, if any.
    pub async fn closed(&self) -> Option<u16> {
        let mut closed = self.closed.clone();
        let value = within("the connection to close", closed.wait_for(Option::is_some)).await.unwrap();
        value.unwrap_or(None)
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.closed.borrow().is_none()
    }

    /// Pings received.
    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }
}

struct EndpointState {
    mode: Mutex<Mode>,
    acceptor: Mutex<tokio_rustls::TlsAcceptor>,
    cert_pem: Mutex<String>,
    connects: AtomicUsize,
    peers: mpsc::UnboundedSender<Arc<Peer>>,
}

/// A wss endpoint.
pub struct TestEndpoint {
    /// `wss://127.0.0.1:PORT/nbwss`.
    pub url: String,
    state: Arc<EndpointState>,
    peers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arc<Peer>>>,
    stop: CancellationToken,
}

impl Drop for TestEndpoint {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestEndpoint {
    /// Starts an endpoint answering CONNECT per `mode`.
    pub async fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("wss://{}/nbwss", listener.local_addr().unwrap());
        let (cert, key) = certificate();
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(EndpointState {
            mode: Mutex::new(mode),
            acceptor: Mutex::new(acceptor(&cert, &key)),
            cert_pem: Mutex::new(cert),
            connects: AtomicUsize::new(0),
            peers: tx,
        });
        let stop = CancellationToken::new();
        let accept_state = state.clone();
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                };
                let state = accept_state.clone();
                let stop = accept_stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = serve_connection(tcp, state) => {}
                    }
                });
            }
        });
        Self { url, state, peers: tokio::sync::Mutex::new(rx), stop }
    }

    /// The certificate presented now (PEM).
    pub fn certificate_pem(&self) -> String {
        self.state.cert_pem.lock().unwrap().clone()
    }

    /// Presents a new certificate from now on.
    pub fn rotate_certificate(&self) {
        let (cert, key) = certificate();
        *self.state.acceptor.lock().unwrap() = acceptor(&cert, &key);
        *self.state.cert_pem.lock().unwrap() = cert;
    }

    /// Changes how the next CONNECTs are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// CONNECT requests received so far.
    pub fn connects(&self) -> usize {
        self.state.connects.load(Ordering::SeqCst)
    }

    /// The next connection that got past the WebSocket handshake and sent CONNECT.
    pub async fn next_peer(&self) -> Arc<Peer> {
        within("a connection from the service", self.peers.lock().await.recv()).await.unwrap()
    }

    /// The next connection that sent CONNECT, or `None` when the endpoint stopped (no deadline).
    pub async fn wait_peer(&self) -> Option<Arc<Peer>> {
        self.peers.lock().await.recv().await
    }

    /// The next connection whose CONNECT was accepted.
    pub async fn next_accepted_peer(&self) -> Arc<Peer> {
        loop {
            let peer = self.next_peer().await;
            if peer.accepted {
                return peer;
            }
        }
    }
}

async fn serve_connection(tcp: TcpStream, state: Arc<EndpointState>) {
    let acceptor = state.acceptor.lock().unwrap().clone();
    let Ok(tls) = acceptor.accept(tcp).await else { return };
    let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else { return };
    let codec = Codec::default();
    let request = loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => match codec.decode(&text) {
                Ok(message) => break message,
                Err(_) => continue,
            },
            Some(Ok(_)) => continue,
            _ => return,
        }
    };
    let Body::ConnectRequest(connect) = &request.body else { return };
    state.connects.fetch_add(1, Ordering::SeqCst);
    let mode = *state.mode.lock().unwrap();
    let reply = |id: String, valid: bool| {
        codec.encode(&Message::with_id(id, Body::ConnectResponse(ConnectResponse { valid })))
    };
    match mode {
        Mode::Valid | Mode::Freeze => {
            let _ = ws.send(WsMessage::text(reply(request.id.clone(), true))).await;
        }
        Mode::CommandFirst => {
            let early = CommandRequest::new(Method::Get, "/netbackup/echo");
            let _ = ws
                .send(WsMessage::text(codec.encode(&Message::with_id("EARLY", Body::CommandRequest(early)))))
                .await;
            let _ = ws.send(WsMessage::text(reply(request.id.clone(), true))).await;
        }
        Mode::Invalid => {
            let _ = ws.send(WsMessage::text(reply(request.id.clone(), false))).await;
        }
        Mode::WrongId => {
            let _ = ws.send(WsMessage::text(reply(nbwss_protocol::new_message_id(), true))).await;
        }
        Mode::Silent => {}
    }
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let (closed_tx, closed_rx) = watch::channel(None);
    let pings = Arc::new(AtomicUsize::new(0));
    let peer = Arc::new(Peer {
        token: connect.token.expose().to_owned(),
        accepted: matches!(mode, Mode::Valid | Mode::Freeze | Mode::CommandFirst),
        mode,
        incoming: tokio::sync::Mutex::new(in_rx),
        outgoing: out_tx,
        closed: closed_rx,
        pings: pings.clone(),
        codec,
    });
    let _ = state.peers.send(peer.clone());
    if mode == Mode::Freeze {
        // Never read again: pings stay unanswered. Hold the socket until the test ends.
        let _keep = ws;
        std::future::pending::<()>().await;
        return;
    }
    let mut close_code = None;
    loop {
        tokio::select! {
            outgoing = out_rx.recv() => match outgoing {
                Some(message) => {
                    let is_close = matches!(message, WsMessage::Close(_));
                    if ws.send(message).await.is_err() { break; }
                    if is_close {
                        // Wait for the service's answering close (or the end of the stream).
                        while let Some(Ok(message)) = ws.next().await {
                            if let WsMessage::Close(frame) = message {
                                close_code = frame.map(|frame| u16::from(frame.code));
                                break;
                            }
                        }
                        break;
                    }
                }
                None => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(WsMessage::Close(frame))) => {
                    close_code = frame.map(|frame| u16::from(frame.code));
                    let _ = ws.close(None).await;
                    break;
                }
                Some(Ok(WsMessage::Ping(_))) => { pings.fetch_add(1, Ordering::SeqCst); }
                Some(Ok(message)) => { let _ = in_tx.send(message); }
                Some(Err(_)) | None => break,
            },
        }
    }
    drop(peer);
    let _ = closed_tx.send(Some(close_code));
}

/// An HTTPS "primary server" with a few routes for relay tests.
pub struct TestPrimary {
    /// `https://127.0.0.1:PORT/netbackup`.
    pub base_url: String,
    /// Its certificate.
    pub cert_pem: String,
    /// Opens `/netbackup/gate`.
    pub gate: Arc<tokio::sync::Notify>,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for TestPrimary {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl TestPrimary {
    /// Starts it.
    pub async fn start() -> Self {
        Self::start_with(axum::Router::new()).await
    }

    /// Starts it with `extra` routes besides its own.
    pub async fn start_with(extra: axum::Router) -> Self {
        use axum::routing::any;
        let gate = Arc::new(tokio::sync::Notify::new());
        let gate_route = gate.clone();
        let app = axum::Router::new()
            .route(
                "/netbackup/echo",
                any(|method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| async move {
                    let headers: serde_json::Map<String, serde_json::Value> = headers
                        .iter()
                        .map(|(name, value)| (name.to_string(), serde_json::Value::String(value.to_str().unwrap_or("").to_owned())))
                        .collect();
                    (
                        [("x-test", "echo"), ("connection", "keep-alive")],
                        axum::Json(serde_json::json!({"method": method.as_str(), "uri": uri.to_string(), "headers": headers, "body": body})),
                    )
                }),
            )
            .route(
                "/netbackup/gate",
                any(move || {
                    let gate = gate_route.clone();
                    async move {
                        gate.notified().await;
                        "opened"
                    }
                }),
            )
            .route("/netbackup/slow", any(std::future::pending::<String>))
            .route("/netbackup/big", any(|| async { "x".repeat(64 * 1024) }))
            .merge(extra);
        let (cert, key) = certificate();
        let config = nbwss_service::tls_server_config(&cert, &key).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
        )
        .unwrap()
        .handle(handle.clone());
        tokio::spawn(server.serve(app.into_make_service()));
        Self { base_url: format!("https://{addr}/netbackup"), cert_pem: cert, gate, handle }
    }
}

/// An HTTP CONNECT proxy requiring `user:pass`, counting tunnels.
pub struct TestProxy {
    /// `http://user:pass@127.0.0.1:PORT`.
    pub url: String,
    /// Tunnels opened.
    pub tunnels: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestProxy {
    /// Starts it.
    pub async fn start() -> Self {
        use base64::Engine as _;
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("user:pa ss"));
        let (count, stop_accept) = (tunnels.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = stop_accept.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                };
                let (count, expected, stop) = (count.clone(), expected.clone(), stop_accept.clone());
                tokio::spawn(async move {
                    let mut reader = tokio::io::BufReader::new(&mut client);
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.is_err() {
                        return;
                    }
                    let mut authorized = false;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("proxy-authorization") && value.trim() == expected {
                                authorized = true;
                            }
                        }
                    }
                    drop(reader);
                    if !authorized {
                        let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
                        return;
                    }
                    let target = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                });
            }
        });
        Self { url: format!("http://user:pa%20ss@{addr}"), tunnels, stop }
    }
}

/// Properties with short periods, for tests.
pub fn fast_properties() -> Properties {
    Properties {
        connection_info_period: Duration::from_millis(400),
        keep_alive_scheduled_rate: Duration::from_secs(30),
        connect_response_timeout: Duration::from_secs(5),
        ..Properties::default()
    }
}

/// A service configuration on `dir` for a primary server.
pub fn config(dir: &Path, primary_base_url: &str, primary_cert_pem: &str) -> ServiceConfig {
    ServiceConfig::new(dir, primary_base_url, Some(primary_cert_pem.to_owned()))
}

/// Starts a service.
pub async fn start(config: ServiceConfig, properties: Properties) -> (ServiceHandle, AdminClient) {
    let service = Service::start(config, properties).await.unwrap();
    let client = service.admin_client().unwrap();
    (service, client)
}

/// Validates then saves an endpoint as a WebSocket server.
pub async fn add(
    client: &AdminClient,
    endpoint: &TestEndpoint,
    host_name: &str,
    group: &str,
    priority: i64,
    token: &str,
) {
    add_at(client, &endpoint.url, host_name, group, priority, token).await;
}

/// Validates then saves the endpoint at `url` as a WebSocket server.
pub async fn add_at(
    client: &AdminClient,
    url: &str,
    host_name: &str,
    group: &str,
    priority: i64,
    token: &str,
) {
    let host = HostObject {
        host_name: host_name.into(),
        url: url.to_owned(),
        group_id: group.into(),
        priority,
        ..HostObject::default()
    };
    let validated = client.validate_host(&host).await.unwrap();
    let save = HostObject { token: Some(Secret::new(token)), certificate: validated.certificate, ..host };
    client.save(&save).await.unwrap();
}

/// The listed state of one WebSocket server: (state, connectionState, closeStatus).
pub async fn state_of(client: &AdminClient, host_name: &str) -> Option<(String, String, Option<String>)> {
    let list = client.list().await.unwrap();
    list.into_iter().find(|host| host.host_name == host_name).map(|host| {
        (
            host.state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            host.connection_state.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            host.close_status.map(|s| s.as_str().to_owned()),
        )
    })
}

/// Waits until a WebSocket server is listed as connected (or not).
pub async fn wait_connection(client: &AdminClient, host_name: &str, connected: bool) {
    let want = if connected { "CONNECTED" } else { "DISCONNECTED" };
    wait_until(&format!("{host_name} {want}"), || async {
        state_of(client, host_name).await.is_some_and(|(_, state, _)| state == want)
    })
    .await;
}

/// Waits until a WebSocket server's closeStatus is `status`.
pub async fn wait_close_status(client: &AdminClient, host_name: &str, status: &str) {
    wait_until(&format!("{host_name} closeStatus {status}"), || async {
        state_of(client, host_name).await.is_some_and(|(_, _, close)| close.as_deref() == Some(status))
    })
    .await;
}

/// A COMMAND request with headers.
pub fn command(method: Method, uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> CommandRequest {
    let mut request = CommandRequest::new(method, uri);
    request.headers = headers.iter().map(|(k, v)| (*k, *v)).collect();
    request.parameters = body.map(str::to_owned);
    request
}

/// An HTTPS client trusting the service's admin certificate, never through a proxy.
pub fn admin_http(service: &ServiceHandle) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(service.admin_certificate_pem().as_bytes()).unwrap(),
        )
        .no_proxy()
        .build()
        .unwrap()
}

/// An HTTPS client trusting the service's admin certificate, and the URL of its local ingest route.
pub fn ingest_client(service: &ServiceHandle) -> (reqwest::Client, String) {
    (admin_http(service), format!("{}{}", service.admin_url(), nbwss_service::notify::INGEST_PATH))
}

/// A TCP relay in front of an endpoint that can freeze, as a stopped (SIGSTOP) endpoint process looks from
/// the network: connections are still accepted, but from the freeze on no byte is forwarded either way, on
/// the connections open then and on new ones, and none is closed.
pub struct FreezableRelay {
    /// `wss://127.0.0.1:PORT/nbwss`, the relay's own address.
    pub url: String,
    frozen: watch::Sender<bool>,
    cuts: watch::Sender<u64>,
    stop: CancellationToken,
}

impl Drop for FreezableRelay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FreezableRelay {
    /// Relays to the endpoint at `target` (a `wss://HOST:PORT/...` URL).
    pub async fn start(target: &str) -> Self {
        Self::start_frozen_after(target, usize::MAX).await
    }

    /// Relays the first `connections` connections; those after are frozen from the start.
    pub async fn start_frozen_after(target: &str, connections: usize) -> Self {
        let upstream = target.trim_start_matches("wss://").split('/').next().unwrap().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("wss://{}/nbwss", listener.local_addr().unwrap());
        let (frozen, _) = watch::channel(false);
        let (cuts, _) = watch::channel(0u64);
        let stop = CancellationToken::new();
        let (frozen_accept, cuts_accept, stop_accept) = (frozen.clone(), cuts.clone(), stop.clone());
        tokio::spawn(async move {
            let mut accepted_count = 0;
            loop {
                let (client, _) = tokio::select! {
                    () = stop_accept.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                };
                accepted_count += 1;
                let held = accepted_count > connections;
                let (frozen, stop, upstream) =
                    (frozen_accept.subscribe(), stop_accept.clone(), upstream.clone());
                let mut cut = cuts_accept.subscribe();
                tokio::spawn(async move {
                    // Held open, never answered, while frozen; closed only when the test ends.
                    if held || *frozen.borrow() {
                        stop.cancelled().await;
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = cut.changed() => {}
                        () = pump(client_read, server_write, frozen.clone()) => {}
                        () = pump(server_read, client_write, frozen) => {}
                    }
                });
            }
        });
        Self { url, frozen, cuts, stop }
    }

    /// Stops forwarding from now on.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Drops every open connection at the TCP level (no WebSocket close), as a network failure does; new
    /// connections are relayed again.
    pub fn cut(&self) {
        self.cuts.send_modify(|cuts| *cuts += 1);
    }
}

/// Copies until either side closes; once frozen, holds what it read and forwards nothing more.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            () = async { let _ = frozen.wait_for(|frozen| *frozen).await; } => {
                std::future::pending::<()>().await;
                return;
            }
        };
        let Ok(read) = read else { return };
        if read == 0 || *frozen.borrow() {
            if read != 0 {
                std::future::pending::<()>().await;
            }
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// A WebSocket server's entry in the list API, as JSON (what `nbwss servers list --json` prints).
pub async fn listed(client: &AdminClient, host_name: &str) -> serde_json::Value {
    let list = client.list().await.unwrap();
    let host = list.into_iter().find(|host| host.host_name == host_name).unwrap();
    serde_json::to_value(host).unwrap()
}

/// Waits until a WebSocket server's last close reason is `reason`; its entry then.
pub async fn wait_close_reason(client: &AdminClient, host_name: &str, reason: &str) -> serde_json::Value {
    wait_until(&format!("{host_name} lastClose.reason {reason}"), || async {
        listed(client, host_name).await["lastClose"]["reason"] == reason
    })
    .await;
    listed(client, host_name).await
}

/// An ACTIVE JOB record of a top-level backup with this id.
pub fn job_record(job_id: i64) -> nbwss_service::notify::Record {
    nbwss_service::notify::Record::Job(nbwss_protocol::JobRecord {
        schedule_type: nbwss_protocol::ScheduleType::Full,
        client_name: "c1".into(),
        status: 0,
        start_time: 1_700_000_000,
        state: nbwss_protocol::JobState::Active,
        policy_name: "p".into(),
        parent_job_id: job_id,
        job_id,
        policy_type: "STANDARD".into(),
        job_type: nbwss_protocol::JobType::Backup,
    })
}

/// A service without a primary server of its own (notifications come from ingest), one endpoint as the
/// WebSocket server `endpoint1` of `group1`, connected, and the outbox opened from outside as
/// `nbwss notify` opens it. Keep `_dir` and `endpoint` bound while the test runs: dropping them removes
/// the data directory and stops the endpoint.
pub struct OneGroup {
    pub _dir: tempfile::TempDir,
    pub config: ServiceConfig,
    pub properties: Properties,
    pub service: ServiceHandle,
    pub endpoint: TestEndpoint,
    pub peer: Arc<Peer>,
    pub outbox: nbwss_service::notify::Outbox,
}

impl OneGroup {
    pub async fn start(properties: Properties) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = certificate();
        let config = config(dir.path(), "https://127.0.0.1:9/netbackup", &cert);
        let (service, admin) = start(config.clone(), properties.clone()).await;
        let endpoint = TestEndpoint::start(Mode::Valid).await;
        add(&admin, &endpoint, "endpoint1", "group1", 1, "token1").await;
        let peer = endpoint.next_accepted_peer().await;
        let outbox = nbwss_service::notify::open_outbox(dir.path(), &Properties::default()).unwrap();
        wait_until("group1 registered", || async { outbox.groups().unwrap() == ["group1"] }).await;
        Self { _dir: dir, config, properties, service, endpoint, peer, outbox }
    }
}

/// An IMAGE CREATE record as `nbwss notify --file` takes it.
pub fn image_record_json(backup_time: i64) -> String {
    format!(
        r#"{{"clientType":"STANDARD","clientName":"c1","backupTime":{backup_time},"createdTime":{backup_time},
        "operationId":"CREATE","backupId":"c1_{backup_time}"}}"#
    )
}
