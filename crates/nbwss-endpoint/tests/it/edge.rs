//! The internet edge: what unauthenticated clients, slow and silent sockets, oversized calls and revoked
//! credentials get. Raw TLS clients send what no well-behaved library would.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nbwss_endpoint::Store;
use nbwss_protocol::{Body, Codec, CommandResponse, ConnectRequest, Message, NotificationGroup};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{
    client_frame, eventually, frame_length, metric, within, Ending, Harness, Primary, RawClient,
};

/// Source address number `n` on the loopback network.
fn source(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn connect_text(token: &nbwss_protocol::Secret) -> String {
    Codec::default().encode(&Message::new(Body::ConnectRequest(ConnectRequest { token: token.clone() })))
}

/// Reads the endpoint's next text frame (skipping pongs) as an NBWSS message.
async fn next_message(client: &mut RawClient) -> Message {
    within(async {
        loop {
            let (opcode, payload) = client.read_frame().await.expect("a message");
            if opcode == 1 {
                return Codec::default().decode(std::str::from_utf8(&payload).unwrap()).unwrap();
            }
        }
    })
    .await
}

#[tokio::test]
async fn before_connect_a_message_may_be_at_most_the_small_limit() {
    let harness = Harness::start().await;
    let limit = nbwss_endpoint::DEFAULT_PRE_CONNECT_MAX_MESSAGE_BYTES;

    // Exactly the limit is read (and refused for what it is: not JSON, 1007).
    let (mut client, head) = RawClient::upgraded(&harness.endpoint, source(2)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    client.send_frame(1, true, &vec![b'['; limit]).await;
    assert!(matches!(client.ending().await, Ending::Closed(1007, _)));

    // One byte over, in one frame: refused at the frame header, 1009, naming the limit.
    let (mut client, _) = RawClient::upgraded(&harness.endpoint, source(3)).await;
    client.send_frame(1, true, &vec![b'['; limit + 1]).await;
    match client.ending().await {
        Ending::Closed(1009, reason) => {
            assert!(reason.contains(&format!("at most {limit} bytes")), "{reason}")
        }
        other => panic!("expected 1009, got {other:?}"),
    }

    // One byte over in fragments.
    let (mut client, _) = RawClient::upgraded(&harness.endpoint, source(4)).await;
    client.send_frame(1, false, &vec![b'['; limit / 2]).await;
    client.send_frame(0, false, &vec![b'['; limit / 2]).await;
    client.send_frame(0, true, b"[").await;
    assert!(matches!(client.ending().await, Ending::Closed(1009, _)));

    // A frame announcing 14 MB: closed after its header, long before 14 MB could be sent.
    let (mut client, _) = RawClient::upgraded(&harness.endpoint, source(5)).await;
    let mut header = vec![0x81];
    frame_length(&mut header, 14_000_000);
    header.extend_from_slice(&[1, 2, 3, 4]);
    client.send_raw(&header).await;
    let mut sent = 0usize;
    let chunk = vec![b'0'; 64 * 1024];
    while sent < 14_000_000 {
        if client.try_send_raw(&chunk).await.is_err() {
            break;
        }
        sent += chunk.len();
        if sent > 4 * 1024 * 1024 {
            break;
        }
    }
    assert!(matches!(client.ending().await, Ending::Closed(1009, _) | Ending::Dropped));
    assert!(metric(&harness, "nbwss_endpoint_connect_failures_total{reason=\"too_big\"}").await >= 3.0);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_fragmented_connect_is_accepted_and_then_the_full_limit_applies() {
    let harness = Harness::start_with(|config| config.limits.pre_connect_max_message_bytes = 1024).await;
    let token = harness.token("primary1");
    let (mut client, _) = RawClient::upgraded(&harness.endpoint, source(2)).await;
    // CONNECT in five fragments with a ping among them, and a 20 KiB NOTIFICATION (over the pre-CONNECT
    // limit) right behind it in the same write, before any answer.
    let connect = connect_text(&token);
    let pieces: Vec<&[u8]> = connect.as_bytes().chunks(connect.len() / 4).collect();
    let mut wire = Vec::new();
    for (index, piece) in pieces.iter().enumerate() {
        let opcode = u8::from(index == 0);
        wire.extend(client_frame(opcode, index + 1 == pieces.len(), piece));
        if index == 1 {
            wire.extend(client_frame(9, true, b"are you there"));
        }
    }
    let records: Vec<_> = (0..60).map(crate::notifications::image).collect();
    let notification =
        Message::with_id("N1", Body::NotificationRequest(vec![NotificationGroup::images(records)]));
    let notification = Codec::default().encode(&notification);
    assert!(notification.len() > 8 * 1024, "{}", notification.len());
    wire.extend(client_frame(1, true, notification.as_bytes()));
    client.send_raw(&wire).await;

    let answer = next_message(&mut client).await;
    assert!(matches!(answer.body, Body::ConnectResponse(response) if response.valid));
    let ack = next_message(&mut client).await;
    assert_eq!(ack.id, "N1", "the message sent right behind CONNECT arrived whole");

    // The upgrade request, CONNECT and a message all in one write, before the 101: nothing is lost
    // between the HTTP layer, the pre-CONNECT stream and the session.
    let mut eager = RawClient::tls(&harness.endpoint, source(3)).await.unwrap();
    let mut wire = b"GET /nbwss HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                     Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        .to_vec();
    wire.extend(client_frame(1, true, connect_text(&harness.token("primary2")).as_bytes()));
    let second = Message::with_id("N2", Body::NotificationRequest(vec![]));
    wire.extend(client_frame(1, true, Codec::default().encode(&second).as_bytes()));
    eager.send_raw(&wire).await;
    assert!(eager.read_head().await.starts_with("HTTP/1.1 101"));
    assert!(matches!(next_message(&mut eager).await.body, Body::ConnectResponse(response) if response.valid));
    assert_eq!(next_message(&mut eager).await.id, "N2");
    assert_eq!(
        harness.get_json("/api/v1/notifications?limit=100").await["notifications"].as_array().unwrap().len(),
        60
    );
    assert_eq!(metric(&harness, "nbwss_endpoint_pending_connections").await, 0.0);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_flood_before_connect_is_bounded() {
    let harness = Harness::start_with(|config| config.limits.pre_connect_max_message_bytes = 1024).await;
    // Pings, and empty fragments that never end a message: each costs a few bytes, the budget (twice
    // the limit) ends them.
    for (n, flood) in [(2u8, client_frame(9, true, b"")), (3, client_frame(0, false, b""))] {
        let (mut client, _) = RawClient::upgraded(&harness.endpoint, source(n)).await;
        let mut wire = if n == 3 { client_frame(1, false, b"{") } else { Vec::new() };
        for _ in 0..1000 {
            wire.extend_from_slice(&flood);
        }
        let _ = client.try_send_raw(&wire).await;
        match client.ending().await {
            Ending::Closed(1009, reason) => assert!(reason.contains("2048 bytes in all"), "{reason}"),
            other => panic!("expected 1009, got {other:?}"),
        }
    }
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn compression_is_never_agreed_and_reserved_bits_are_refused() {
    let harness = Harness::start().await;
    let mut client = RawClient::tls(&harness.endpoint, source(2)).await.unwrap();
    let head =
        client.upgrade("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{head}");
    // A "compressed" text frame (RSV1 set) is a protocol error.
    let mut frame = client_frame(1, true, b"{}");
    frame[0] |= 0x40;
    client.send_raw(&frame).await;
    assert!(matches!(client.ending().await, Ending::Closed(1002, _)));

    // Not an upgrade at all, or a wrong version: a clear HTTP error.
    let mut client = RawClient::tls(&harness.endpoint, source(3)).await.unwrap();
    client.send_raw(b"GET /nbwss HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = client.read_head().await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let mut client = RawClient::tls(&harness.endpoint, source(3)).await.unwrap();
    client
        .send_raw(
            b"GET /nbwss HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: a2V5\r\n\r\n",
        )
        .await;
    assert!(client.read_head().await.starts_with("HTTP/1.1 426"));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn connections_waiting_for_connect_are_capped_in_all_and_per_address() {
    // A full house waits for a place up to half the CONNECT timeout (at most 5 s): 2 s here.
    let harness = Harness::start_with(|config| {
        config.limits.max_pending_connections = 3;
        config.limits.max_pending_per_address = 2;
        config.limits.connect_timeout_ms = 4_000;
    })
    .await;
    let (_first, _) = RawClient::upgraded(&harness.endpoint, source(2)).await;
    let (second, _) = RawClient::upgraded(&harness.endpoint, source(2)).await;
    let (_, head) = RawClient::upgraded(&harness.endpoint, source(2)).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 5"), "{head}");
    let (mut third, head) = RawClient::upgraded(&harness.endpoint, source(3)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (_, head) = RawClient::upgraded(&harness.endpoint, source(4)).await;
    assert!(head.starts_with("HTTP/1.1 503"), "the total cap, after waiting in vain: {head}");
    assert_eq!(metric(&harness, "nbwss_endpoint_pending_connections").await, 3.0);

    // An upgrade waiting for a place gets in as soon as a connection leaves.
    let mut waiting = RawClient::tls(&harness.endpoint, source(4)).await.unwrap();
    let waiting = tokio::spawn(async move {
        let head = waiting.upgrade("").await;
        (waiting, head)
    });
    eventually(|| async {
        metric(&harness, "nbwss_endpoint_connect_failures_total{reason=\"pending_total\"}").await >= 1.0
    })
    .await;
    drop(second);
    let (_admitted, head) = within(waiting).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    // CONNECT accepted: the connection no longer counts, so sessions are not capped by these limits.
    third.send_frame(1, true, connect_text(&harness.token("primary1")).as_bytes()).await;
    assert!(matches!(next_message(&mut third).await.body, Body::ConnectResponse(response) if response.valid));
    eventually(|| async { metric(&harness, "nbwss_endpoint_pending_connections").await == 2.0 }).await;
    let mut sessions = Vec::new();
    for index in 0..3 {
        let name = format!("fleet{index}");
        sessions.push(Primary::connect(&harness.endpoint, &harness.token(&name)).await.expect("connects"));
    }
    assert_eq!(harness.endpoint.connected_primaries().len(), 4);
    assert!(
        metric(&harness, "nbwss_endpoint_connect_failures_total{reason=\"pending_per_address\"}").await
            >= 1.0
    );
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn no_connect_in_time_closes_the_connection() {
    let harness = Harness::start_with(|config| config.limits.connect_timeout_ms = 300).await;
    let (mut client, _) = RawClient::upgraded(&harness.endpoint, source(2)).await;
    match client.ending().await {
        Ending::Closed(1008, reason) => assert!(reason.contains("no CONNECT REQUEST in time"), "{reason}"),
        other => panic!("expected 1008, got {other:?}"),
    }
    harness.endpoint.shutdown().await;
}

/// Reads until the peer ends the connection; true when it did (EOF or reset) within the deadline.
async fn ended<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    tokio::time::timeout(crate::util::DEADLINE, async {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(count) if count > 0) {}
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn slow_and_silent_sockets_are_closed_by_the_timeouts() {
    let harness = Harness::start_with(|config| {
        config.limits.tls_handshake_timeout_ms = 300;
        config.limits.http_header_timeout_ms = 300;
    })
    .await;
    // A TCP connection that never starts TLS.
    let mut silent = RawClient::tcp(&harness.endpoint, source(2)).await;
    // Half a TLS record header, then nothing (slowloris on the handshake).
    let mut half_hello = RawClient::tcp(&harness.endpoint, source(3)).await;
    half_hello.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert!(ended(&mut silent).await, "a silent TCP connection is closed");
    assert!(ended(&mut half_hello).await, "a stalled TLS handshake is closed");

    // TLS done, then no request at all.
    let mut idle = RawClient::tls(&harness.endpoint, source(4)).await.unwrap();
    assert!(ended(&mut idle.stream).await, "a silent TLS connection is closed");

    // Headers one line at a time, forever (slowloris on the headers): closed although bytes keep coming.
    let mut slow = RawClient::tls(&harness.endpoint, source(5)).await.unwrap();
    slow.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < crate::util::DEADLINE {
        if slow.try_send_raw(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(50), slow.stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                // The endpoint answers the timeout (408) before closing: keep reading to the end.
                closed = ended(&mut slow.stream).await;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "slowloris headers are cut off");

    // HTTP/2 with prior knowledge is not spoken (it would escape the HTTP/1.1 timeouts): closed.
    let mut h2 = RawClient::tls(&harness.endpoint, source(7)).await.unwrap();
    h2.send_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(ended(&mut h2.stream).await, "an HTTP/2 preface is refused");

    // Headers larger than the 64 KiB read buffer: refused (431) rather than buffered.
    let mut huge = RawClient::tls(&harness.endpoint, source(8)).await.unwrap();
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 100 * 1024));
    let _ = huge.try_send_raw(&request).await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(crate::util::DEADLINE, huge.stream.read_to_string(&mut answer)).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A keep-alive connection that goes idle after a request is closed too.
    let mut keep_alive = RawClient::tls(&harness.endpoint, source(6)).await.unwrap();
    keep_alive.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = keep_alive.read_head().await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(ended(&mut keep_alive.stream).await, "an idle keep-alive connection is closed");
    assert!(
        metric(&harness, "nbwss_endpoint_connections_refused_total{reason=\"tls_handshake_timeout\"}").await
            >= 2.0
    );
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn the_listener_caps_open_connections() {
    let harness = Harness::start_with(|config| config.limits.max_connections = 3).await;
    let primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let one = RawClient::tls(&harness.endpoint, source(2)).await.unwrap();
    let _two = RawClient::tls(&harness.endpoint, source(3)).await.unwrap();
    // The fourth is closed at once, before TLS.
    assert!(RawClient::tls(&harness.endpoint, source(4)).await.is_err());
    // A connection that closes gives its place back.
    drop(one);
    let deadline = Instant::now() + crate::util::DEADLINE;
    let again = loop {
        match RawClient::tls(&harness.endpoint, source(4)).await {
            Ok(client) => break client,
            Err(error) => assert!(Instant::now() < deadline, "no place came free: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(again);
    drop(primary);
    harness.wait_connected("primary1", false).await;
    assert!(
        metric(&harness, "nbwss_endpoint_connections_refused_total{reason=\"max_connections\"}").await >= 1.0
    );
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_call_over_the_message_limit_is_413_and_the_session_stays() {
    let limit = 64 * 1024;
    let harness = Harness::start_with(|config| config.limits.max_message_bytes = limit).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    harness.wait_connected("primary1", true).await;
    let connected_since = harness.primary("primary1").await["connectedSince"].clone();
    let url = harness.relay_url("primary1", "login");
    let post = |body: String| {
        let request = harness.http.post(&url).header("X-NBWSS-API-Key", &harness.api_key).body(body);
        tokio::spawn(request.send())
    };
    let ok = CommandResponse { status_code: 200, headers: Default::default(), body: "{}".into() };

    // A one-byte body tells the size of everything else in the COMMAND.
    let call = post("x".to_owned());
    let probe = within(primary.recv_text()).await.unwrap();
    let id = Codec::default().decode(&probe).unwrap().id;
    primary.respond(&id, ok.clone()).await;
    assert_eq!(within(call).await.unwrap().unwrap().status(), 200);
    let overhead = probe.len() - 1;

    // Newlines take two bytes each once JSON-escaped: a body of half the limit in newlines, topped up
    // with letters to exactly the limit, is relayed.
    let newlines = limit / 4;
    let exact = format!("{}{}", "\n".repeat(newlines), "x".repeat(limit - overhead - 2 * newlines));
    let call = post(exact.clone());
    let text = within(primary.recv_text()).await.unwrap();
    assert_eq!(text.len(), limit, "the COMMAND is exactly at the limit");
    primary.respond(&Codec::default().decode(&text).unwrap().id, ok.clone()).await;
    assert_eq!(within(call).await.unwrap().unwrap().status(), 200);

    // One byte more: 413 from the endpoint, and nothing is sent to the primary server.
    let response = within(post(format!("{exact}x"))).await.unwrap().unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["x-nbwss-origin"], "endpoint");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    assert!(body["error"]["message"].as_str().unwrap().contains(&format!("{}", limit + 1)), "{body}");

    // The session was neither closed nor replaced: the next call is the next COMMAND it sees.
    let call = post("after".to_owned());
    let next = Codec::default().decode(&within(primary.recv_text()).await.unwrap()).unwrap();
    match &next.body {
        Body::CommandRequest(request) => assert_eq!(request.parameters.as_deref(), Some("after")),
        other => panic!("expected the next COMMAND, got {other:?}"),
    }
    primary.respond(&next.id, ok).await;
    assert_eq!(within(call).await.unwrap().unwrap().status(), 200);
    assert_eq!(harness.primary("primary1").await["connectedSince"], connected_since);
    harness.endpoint.shutdown().await;
}

type Chunks = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;

/// A request body that sends `first` and then waits for more until the returned sender is dropped.
async fn stalled_body(first: Vec<u8>) -> (Chunks, reqwest::Body) {
    let (chunks, receiver) = tokio::sync::mpsc::channel(1);
    chunks.send(Ok(first)).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    }));
    (chunks, body)
}

#[tokio::test]
async fn a_slow_body_gets_408_and_holds_no_relay_slot() {
    let harness = Harness::start_with(|config| {
        config.limits.request_body_timeout_ms = 500;
        config.limits.max_in_flight_per_primary = 1;
    })
    .await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    // A body that sends a little and then nothing more.
    let (chunks, body) = stalled_body(b"{\"user".to_vec()).await;
    let slow = harness
        .http
        .post(harness.relay_url("primary1", "login"))
        .header("X-NBWSS-API-Key", &harness.api_key)
        .header("content-length", "1000")
        .body(body)
        .send();
    let slow = tokio::spawn(slow);
    // While it trickles, another call gets the only slot.
    let call = harness.spawn_relay_get("primary1", "admin/jobs");
    let (id, _) = primary.next_command().await;
    primary
        .respond(&id, CommandResponse { status_code: 200, headers: Default::default(), body: "{}".into() })
        .await;
    assert_eq!(within(call).await.unwrap().unwrap().status(), 200);
    let response = within(slow).await.unwrap().unwrap();
    assert_eq!(response.status(), 408);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "body_timeout");
    drop(chunks);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_token_revoked_or_rotated_by_another_process_closes_its_session() {
    let harness = Harness::start_with(|config| config.limits.revocation_check_interval_ms = 200).await;
    let mut revoked = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let mut rotated = Primary::connect(&harness.endpoint, &harness.token("primary2")).await.unwrap();
    let mut kept = Primary::connect(&harness.endpoint, &harness.token("primary3")).await.unwrap();
    harness.wait_connected("primary3", true).await;
    // What `nbwss endpoint token revoke` and `rotate` do: their own connection to the same store.
    let other_process = Store::open(harness._dir.path()).unwrap();
    let started = Instant::now();
    assert!(other_process.revoke_token("primary1").unwrap());
    assert_eq!(revoked.closed_with().await, Some(1008));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let started = Instant::now();
    other_process.create_token("primary2", "sg1", 1, &harness.endpoint.websocket_url()).unwrap();
    assert_eq!(rotated.closed_with().await, Some(1008));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(harness.endpoint.connected_primaries(), vec!["primary3".to_owned()]);
    // The session whose token did not change stays.
    kept.send(&Message::with_id("N", Body::NotificationRequest(vec![]))).await;
    assert_eq!(within(kept.recv()).await.unwrap().id, "N");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_revoked_api_key_ends_its_stream_and_its_next_call() {
    let harness = Harness::start_with(|config| config.limits.revocation_check_interval_ms = 200).await;
    let other = harness.endpoint.create_api_key("other").unwrap();
    let stream_url = format!("{}/api/v1/notifications/stream", harness.endpoint.url());
    let doomed =
        harness.http.get(&stream_url).header("X-NBWSS-API-Key", &harness.api_key).send().await.unwrap();
    let surviving = harness.http.get(&stream_url).header("X-NBWSS-API-Key", &other).send().await.unwrap();
    assert_eq!(doomed.status(), 200);
    let other_process = Store::open(harness._dir.path()).unwrap();
    let started = Instant::now();
    assert!(other_process.revoke_api_key("tests").unwrap());
    let text = within(async {
        let mut text = String::new();
        let mut body = doomed.bytes_stream();
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
        text
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("revoked"), "{text}");
    // Its next call is refused; the other key's stream is still open.
    let refused = harness.get("/api/v1/notifications").await;
    assert_eq!(refused.status(), 401);
    let mut surviving = surviving.bytes_stream();
    assert!(
        tokio::time::timeout(Duration::from_millis(600), surviving.next()).await.is_err(),
        "the other key's stream neither ends nor errs"
    );
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn old_and_surplus_notifications_are_pruned() {
    let harness = Harness::start_with(|config| {
        config.retention.max_records = 3;
        config.retention.prune_interval_ms = 100;
    })
    .await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let images: Vec<_> = (1..=5).map(crate::notifications::image).collect();
    primary.notify("A", vec![NotificationGroup::images(images)]).await;
    eventually(|| async {
        let feed = harness.get_json("/api/v1/notifications").await;
        let cursors: Vec<i64> =
            feed["notifications"].as_array().unwrap().iter().map(|n| n["cursor"].as_i64().unwrap()).collect();
        cursors == [3, 4, 5]
    })
    .await;
    assert_eq!(metric(&harness, "nbwss_endpoint_notifications_pruned_total").await, 2.0);
    // The feed's cursors keep counting: nothing already read is served again.
    primary.notify("B", vec![NotificationGroup::images(vec![crate::notifications::image(6)])]).await;
    assert_eq!(harness.get_json("/api/v1/notifications?after=5").await["notifications"][0]["cursor"], 6);
    harness.endpoint.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_its_secrets_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    primary.notify("A", vec![NotificationGroup::images(vec![crate::notifications::image(1)])]).await;
    let dir = harness._dir.path();
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
    for file in [
        nbwss_endpoint::GENERATED_KEY_FILE.to_owned(),
        nbwss_endpoint::DATABASE_FILE.to_owned(),
        format!("{}-wal", nbwss_endpoint::DATABASE_FILE),
        format!("{}-shm", nbwss_endpoint::DATABASE_FILE),
    ] {
        assert_eq!(mode(&file), 0o600, "{file}");
    }
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn request_bodies_held_in_memory_are_bounded() {
    let limit = 64 * 1024;
    let harness = Harness::start_with(|config| {
        config.limits.max_message_bytes = limit;
        config.limits.max_buffered_request_bytes = limit;
        config.limits.request_body_timeout_ms = 1_000;
    })
    .await;
    // Answers every call at once, so that a call made before the budget fills returns quickly.
    let answering = harness.echo_primary("primary1").await;
    // A body that stops after 60 KiB holds 60 KiB of the budget until it times out.
    let (chunks, body) = stalled_body(vec![b'x'; 60 * 1024]).await;
    let url = harness.relay_url("primary1", "login");
    let own_connection = crate::util::http_client(harness.endpoint.certificate_pem());
    let stalled = own_connection.post(&url).header("X-NBWSS-API-Key", &harness.api_key).body(body).send();
    let stalled = tokio::spawn(stalled);
    let post =
        || harness.http.post(&url).header("X-NBWSS-API-Key", &harness.api_key).body(vec![b'y'; 8 * 1024]);
    // Another body that does not fit beside it: 503, retry shortly.
    let held = "nbwss_endpoint_buffered_request_bytes";
    eventually(|| async { metric(&harness, held).await == (60 * 1024) as f64 }).await;
    let busy = post().send().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(busy.json::<Value>().await.unwrap()["error"]["code"], "busy");
    assert_eq!(within(stalled).await.unwrap().unwrap().status(), 408);
    assert_eq!(metric(&harness, held).await, 0.0);
    // Once the stalled call ended, its part of the budget is free again.
    assert_eq!(within(post().send()).await.unwrap().status(), 200);
    drop(chunks);
    answering.abort();
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn an_informational_status_is_no_answer_to_a_call() {
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    for status in [100, 101, 199] {
        let call = harness.spawn_relay_get("primary1", "admin/jobs");
        let (id, _) = primary.next_command().await;
        primary
            .respond(
                &id,
                CommandResponse { status_code: status, headers: Default::default(), body: "x".into() },
            )
            .await;
        let response = within(call).await.unwrap().unwrap();
        assert_eq!(response.status(), 502, "status {status}");
        assert_eq!(response.headers()["x-nbwss-origin"], "endpoint");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "invalid_response");
    }
    // The app's connection is still good for the next call.
    let call = harness.spawn_relay_get("primary1", "admin/jobs");
    let (id, _) = primary.next_command().await;
    primary
        .respond(&id, CommandResponse { status_code: 200, headers: Default::default(), body: "{}".into() })
        .await;
    assert_eq!(within(call).await.unwrap().unwrap().status(), 200);
    harness.endpoint.shutdown().await;
}
