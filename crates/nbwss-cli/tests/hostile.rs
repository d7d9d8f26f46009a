//! The internet edge under attack: `nbwss endpoint run` as its own process (so that its resident memory is
//! its own, not the attackers' or this test's), a real NBWSS service connected to it in front of the
//! emulator, an app relaying calls through it, and at the same time:
//!
//! * 100 unauthenticated WebSocket connections each sending a 14 MB junk first message (a JSON array of
//!   zeros in one frame, as fast as the endpoint takes it: the attack that once cost 987 MB for six),
//! * 100 more each sending the largest junk the endpoint accepts before CONNECT (one byte under the
//!   limit, in fragments) and then holding the connection open without finishing the message,
//! * 200 TLS connections that send nothing after the handshake, and 20 TCP connections that never even
//!   start TLS.
//!
//! The endpoint's peak resident memory stays under [`PEAK_RSS_BOUND_MIB`], every relayed call succeeds,
//! the service's session is never replaced, and every idle or holding socket is closed by a timeout.
//! Then a careless app's call just over the message limit gets 413 and the session still stays.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nbwss_emulator::{Emulator, EmulatorConfig};
use nbwss_endpoint::Store;
use nbwss_protocol::{HostObject, Properties};
use nbwss_service::PrimaryCredentials;
use nbwss_service::{Service, ServiceConfig};
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

#[path = "support/running_endpoint.rs"]
mod running_endpoint;
use running_endpoint::RunningEndpoint;

/// The bound on the endpoint's peak resident memory (VmHWM) over the whole test, start-up included.
/// Measured on a debug build (the test prints it): about 19 MiB at rest and 40 MiB at the attack's peak,
/// i.e. about 50 KiB per hostile connection. Why it holds: before CONNECT a connection is read with a
/// 64 KiB limit (at most 128 KiB in all), so a holding connection costs its TLS buffers, the partial
/// message and a 16 KiB read buffer, and a 14 MB message is refused at its frame header. The bound
/// leaves room for a loaded machine's allocator; a regression to reading 14 MB messages would need
/// well over a gigabyte.
const PEAK_RSS_BOUND_MIB: u64 = 100;
/// Connections of each kind.
const FLOODS: u8 = 100;
const HOLDERS: u8 = 100;
const IDLE_TLS: u8 = 200;
const SILENT_TCP: u8 = 20;
/// The size the flooding connections try to send, as in the attack that once cost 987 MB.
const FLOOD_BYTES: u64 = 14_000_000;
/// The endpoint's pre-CONNECT message limit (its default).
const PRE_CONNECT_LIMIT: usize = nbwss_endpoint::DEFAULT_PRE_CONNECT_MAX_MESSAGE_BYTES;
/// How long any one condition may take on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(120);
const PRIMARY: &str = "primary1";

/// Starts `nbwss endpoint run` with short timeouts so that nothing waits long; every other limit at its
/// default.
fn start_endpoint(dir: &Path) -> RunningEndpoint {
    let config = dir.join("endpoint.toml");
    let text = format!(
        "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[limits]\ntls_handshake_timeout_ms = 5000\nhttp_header_timeout_ms = 5000\nconnect_timeout_ms = 10000\n",
        dir.join("data")
    );
    std::fs::write(&config, text).unwrap();
    RunningEndpoint::start(&config, Some(&dir.join("endpoint.log")))
}

/// A line of /proc/PID/status of the endpoint, in KiB (VmRSS: resident now, VmHWM: the peak).
fn memory_kib(endpoint: &RunningEndpoint, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", endpoint.pid()))
        .expect("/proc/PID/status: this test needs Linux");
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// What the attackers need to reach the endpoint.
#[derive(Clone)]
struct Target {
    address: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    async fn tcp(&self, source: Ipv4Addr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        socket.connect(self.address).await.unwrap()
    }

    async fn tls(&self, source: Ipv4Addr) -> TlsStream<TcpStream> {
        let tcp = self.tcp(source).await;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        self.tls.connect(name, tcp).await.unwrap()
    }

    /// A TLS connection upgraded to a WebSocket, nothing sent on it yet.
    async fn websocket(&self, source: Ipv4Addr) -> TlsStream<TcpStream> {
        let mut stream = self.tls(source).await;
        stream
            .write_all(
                b"GET /nbwss HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
        stream
    }
}

/// The header of a masked client frame announcing `length` bytes (mask 0: the payload goes as is).
fn frame_header(opcode: u8, fin: bool, length: u64) -> Vec<u8> {
    let mut header = vec![opcode | if fin { 0x80 } else { 0 }];
    match length {
        0..=125 => header.push(0x80 | length as u8),
        126..=65535 => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend_from_slice(&length.to_be_bytes());
        }
    }
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

/// Reads until the endpoint ends the connection; returns the close code if it sent a close frame.
async fn ending(stream: &mut TlsStream<TcpStream>) -> Option<u16> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(count) => received.extend_from_slice(&chunk[..count]),
        }
    }
    // The close frame, if any, is the last thing sent: opcode 8, then the code.
    let at = received.iter().rposition(|byte| *byte == 0x88)?;
    let code = received.get(at + 2..at + 4)?;
    Some(u16::from_be_bytes([code[0], code[1]]))
}

/// Writes a 14 MB single-frame message of `[0,0,0,...` until the endpoint stops taking it.
async fn flood(target: Target, source: Ipv4Addr) -> Option<u16> {
    let mut stream = target.websocket(source).await;
    let mut payload = b"[".to_vec();
    payload.extend(b"0,".repeat(32 * 1024));
    let mut sent = 0;
    let mut wire = frame_header(1, true, FLOOD_BYTES);
    while sent < FLOOD_BYTES {
        wire.extend_from_slice(&payload);
        if stream.write_all(&wire).await.is_err() {
            break;
        }
        sent += payload.len() as u64;
        wire.clear();
    }
    ending(&mut stream).await
}

/// Sends one byte less than the pre-CONNECT limit as an unfinished fragmented message, then holds.
async fn hold(target: Target, source: Ipv4Addr, sent: Arc<AtomicUsize>) -> Option<u16> {
    let mut stream = target.websocket(source).await;
    let mut left = PRE_CONNECT_LIMIT - 1;
    let mut opcode = 1;
    while left > 0 {
        let piece = left.min(16 * 1024);
        let mut wire = frame_header(opcode, false, piece as u64);
        wire.extend(std::iter::repeat_n(b'0', piece));
        stream.write_all(&wire).await.unwrap();
        left -= piece;
        opcode = 0;
    }
    sent.fetch_add(1, Ordering::SeqCst);
    ending(&mut stream).await
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_cost_bounded_memory_while_relayed_calls_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let endpoint = start_endpoint(dir.path());
    assert_eq!(endpoint.fingerprint.len(), 95);
    // What `nbwss endpoint token create` and `apikey create` do, beside the running endpoint.
    let store = Store::open(&dir.path().join("data")).unwrap();
    let details = store.create_token(PRIMARY, "g1", 1, &endpoint.websocket_url).unwrap();
    let api_key = store.create_api_key("app").unwrap();
    let certificate =
        std::fs::read_to_string(dir.path().join("data").join(nbwss_endpoint::GENERATED_CERT_FILE)).unwrap();

    // A real service, wired the way an administrator does it.
    let mut config =
        ServiceConfig::new(dir.path().join("service"), emulator.base_url(), Some(emulator.certificate_pem()));
    config.primary.credentials = Some(PrimaryCredentials {
        user_name: Some("admin".into()),
        password: Some("password".into()),
        domain_type: None,
        domain_name: None,
        api_key: None,
    });
    let (properties, _) = Properties::parse("connectionInfo.period=1\n").unwrap();
    let service = Service::start(config, properties).await.unwrap();
    let admin = service.admin_client().unwrap();
    let mut host = HostObject::from_value(&details.to_value()).unwrap();
    host.certificate = admin.validate_host(&host).await.unwrap().certificate;
    admin.save(&host).await.unwrap();

    let app = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certificate.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let primaries = format!("{}/api/v1/primaries", endpoint.url);
    let our_primary = || async {
        let list = app.get(&primaries).header("X-NBWSS-API-Key", &api_key).send().await.unwrap();
        list.json::<Value>().await.unwrap()["primaries"][0].clone()
    };
    let connected_since = {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let primary = our_primary().await;
            if primary["connected"] == true {
                break primary["connectedSince"].clone();
            }
            assert!(Instant::now() < deadline, "the service did not connect: {primary}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let relay = format!("{}/api/v1/primaries/{PRIMARY}/netbackup", endpoint.url);
    let login: Value = app
        .post(format!("{relay}/login"))
        .header("X-NBWSS-API-Key", &api_key)
        .header("Content-Type", "application/vnd.netbackup+json;version=1.0")
        .body(r#"{"userName":"admin","password":"password"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let rest_kib = memory_kib(&endpoint, "VmRSS:");

    // The app keeps calling through the relay during the whole attack.
    let stop = tokio_util::sync::CancellationToken::new();
    let calls = {
        let (app, relay, api_key, token, stop) =
            (app.clone(), relay.clone(), api_key.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.is_cancelled() {
                let response = app
                    .get(format!("{relay}/admin/jobs?page%5Blimit%5D=1"))
                    .header("X-NBWSS-API-Key", &api_key)
                    .header("Authorization", &token)
                    .send()
                    .await;
                statuses.push(response.map(|response| response.status().as_u16()).unwrap_or(0));
            }
            statuses
        })
    };

    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(certificate.as_bytes()).unwrap()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let address = endpoint.url.trim_start_matches("https://").parse().unwrap();
    let target = Target { address, tls: tokio_rustls::TlsConnector::from(Arc::new(tls)) };
    let started = Instant::now();

    // Idle and silent sockets first, so that they are open while the junk arrives. Each waits for the
    // endpoint to close it.
    let idle_closed = Arc::new(AtomicUsize::new(0));
    let mut idle = tokio::task::JoinSet::new();
    for (n, tls) in (0..IDLE_TLS).map(|n| (n, true)).chain((0..SILENT_TCP).map(|n| (n, false))) {
        let (target, closed) = (target.clone(), idle_closed.clone());
        idle.spawn(async move {
            let mut byte = [0u8; 1];
            if tls {
                let _ = target.tls(Ipv4Addr::new(127, 0, 1, n + 1)).await.read(&mut byte).await;
            } else {
                let _ = target.tcp(Ipv4Addr::new(127, 0, 2, n + 1)).await.read(&mut byte).await;
            }
            closed.fetch_add(1, Ordering::SeqCst);
        });
    }
    let held = Arc::new(AtomicUsize::new(0));
    let mut junk = tokio::task::JoinSet::new();
    for n in 0..HOLDERS {
        junk.spawn(hold(target.clone(), Ipv4Addr::new(127, 0, 3, n + 1), held.clone()));
    }
    for n in 0..FLOODS {
        junk.spawn(flood(target.clone(), Ipv4Addr::new(127, 0, 4, n + 1)));
    }
    // Every holder has sent its junk and none has been closed yet (10 s to send CONNECT): the peak.
    wait_for("every holder to send its junk", || held.load(Ordering::SeqCst) == usize::from(HOLDERS)).await;
    let metrics = app.get(format!("{}/metrics", endpoint.url)).send().await.unwrap().text().await.unwrap();
    let pending = metrics
        .lines()
        .find_map(|line| line.strip_prefix("nbwss_endpoint_pending_connections "))
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap();
    let at_peak_kib = memory_kib(&endpoint, "VmRSS:");

    let mut codes = Vec::new();
    while let Some(code) = junk.join_next().await {
        codes.push(code.unwrap());
    }
    wait_for("every idle socket to be closed", || {
        idle_closed.load(Ordering::SeqCst) == usize::from(IDLE_TLS) + usize::from(SILENT_TCP)
    })
    .await;
    while idle.join_next().await.is_some() {}
    let attack_took = started.elapsed();
    stop.cancel();
    let statuses = calls.await.unwrap();
    let peak_kib = memory_kib(&endpoint, "VmHWM:");

    println!(
        "endpoint memory: {} MiB at rest, {} MiB with {pending} connections waiting for CONNECT, peak {} MiB \
         (bound {PEAK_RSS_BOUND_MIB} MiB); attack over in {attack_took:?}; {} relayed calls during it",
        rest_kib / 1024,
        at_peak_kib / 1024,
        peak_kib / 1024,
        statuses.len()
    );
    assert!(pending >= u64::from(HOLDERS), "the holders were all pending at once: {pending}");
    assert!(
        peak_kib / 1024 < PEAK_RSS_BOUND_MIB,
        "peak resident memory {} MiB over the bound {PEAK_RSS_BOUND_MIB} MiB",
        peak_kib / 1024
    );
    // The floods were refused as too big (1009); the holders closed for not sending CONNECT (1008).
    let floods_refused = codes.iter().filter(|code| **code == Some(1009)).count();
    let holders_timed_out = codes.iter().filter(|code| **code == Some(1008)).count();
    assert_eq!(holders_timed_out, usize::from(HOLDERS), "{codes:?}");
    assert!(
        floods_refused + codes.iter().filter(|code| code.is_none()).count() == usize::from(FLOODS),
        "{codes:?}"
    );
    assert!(floods_refused > 0, "{codes:?}");
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|status| *status == 200), "relayed calls failed: {statuses:?}");

    // A careless app's call just over the message limit: 413 for it alone, the session stays.
    let body = "\n".repeat(9 * 1024 * 1024);
    let response = app
        .post(format!("{relay}/login"))
        .header("X-NBWSS-API-Key", &api_key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["x-nbwss-origin"], "endpoint");
    let jobs = app
        .get(format!("{relay}/admin/jobs?page%5Blimit%5D=1"))
        .header("X-NBWSS-API-Key", &api_key)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), 200);
    assert_eq!(our_primary().await["connectedSince"], connected_since, "the session was never replaced");
    service.shutdown().await;
    emulator.shutdown().await;
}
