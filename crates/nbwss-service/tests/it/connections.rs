//! CONNECT, priority, failover, no preemption, groups, activation, keepalive, pinning, proxy, shutdown.

use std::time::Duration;

use nbwss_protocol::HostState;
use nbwss_protocol::Secret;
use nbwss_service::ProxyConfig;

use crate::util::*;

#[tokio::test]
async fn valid_connect_presents_the_saved_token_and_is_listed_connected() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "qwerrtrtrtrt2234344===").await;
    let peer = endpoint.next_peer().await;
    assert_eq!(peer.token, "qwerrtrtrtrt2234344===");
    wait_connection(&client, "ep1", true).await;
    let list = client.list().await.unwrap();
    assert!(list[0].token.is_none(), "list never returns tokens");
    assert_eq!(list[0].state, Some(HostState::Activated));
    let metrics = client.metrics().await.unwrap();
    assert!(metrics.contains("nbwss_endpoint_connections{state=\"connected\"} 1"), "{metrics}");
    assert_eq!(service.sessions().connected().len(), 1);
    service.shutdown().await;
    // Shutting down closes with 1001 GOING_AWAY.
    assert_eq!(peer.closed().await, Some(1001));
}

#[tokio::test]
async fn invalid_connect_closes_with_violated_policy_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Invalid).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "bad-token").await;
    let peer = endpoint.next_peer().await;
    assert_eq!(peer.closed().await, Some(1008));
    wait_close_status(&client, "ep1", "VIOLATED_POLICY").await;
    assert_eq!(state_of(&client, "ep1").await.unwrap().1, "DISCONNECTED");
    // The connection task tries again, and connects once the endpoint accepts the token.
    endpoint.set_mode(Mode::Valid);
    wait_connection(&client, "ep1", true).await;
    service.shutdown().await;
}

#[tokio::test]
async fn silent_or_wrong_id_connect_closes_abnormally() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let silent = TestEndpoint::start(Mode::Silent).await;
    let wrong = TestEndpoint::start(Mode::WrongId).await;
    let properties = nbwss_protocol::Properties {
        connect_response_timeout: Duration::from_millis(500),
        ..fast_properties()
    };
    let (service, client) = start(config(dir.path(), &primary.base_url, &primary.cert_pem), properties).await;
    add(&client, &silent, "silent", "sg1", 1, "t").await;
    add(&client, &wrong, "wrong", "sg2", 1, "t").await;
    wait_close_status(&client, "silent", "CLOSED_ABNORMALLY").await;
    wait_close_status(&client, "wrong", "CLOSED_ABNORMALLY").await;
    // Retried by the connection task.
    wait_until("silent endpoint retried", || async { silent.connects() >= 2 }).await;
    assert_eq!(state_of(&client, "silent").await.unwrap().1, "DISCONNECTED");
    service.shutdown().await;
}

#[tokio::test]
async fn priority_failover_and_no_preemption() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let ep1 = TestEndpoint::start(Mode::Invalid).await;
    let ep2 = TestEndpoint::start(Mode::Invalid).await;
    let properties = nbwss_protocol::Properties {
        keep_alive_scheduled_rate: Duration::from_millis(200),
        ..fast_properties()
    };
    let (service, client) = start(config(dir.path(), &primary.base_url, &primary.cert_pem), properties).await;
    add(&client, &ep2, "ep2", "sg1", 2, "t2").await;
    add(&client, &ep1, "ep1", "sg1", 1, "t1").await;
    wait_until("both tried", || async { ep1.connects() >= 1 && ep2.connects() >= 1 }).await;

    // Priority: with both able to connect, the lower number wins, and only one connection per group.
    // (ep1 first: a connection-task run between the two changes must not find ep2 alone able to connect.)
    ep1.set_mode(Mode::Valid);
    ep2.set_mode(Mode::Valid);
    // A pass whose CONNECT to ep1 was answered just before the change was refused and may have gone on to
    // ep2 in the same pass, and stays there (no preemption, checked below). Closing that connection starts a
    // new pass, from the best endpoint; a service that preferred ep2 would never reach ep1 and time out.
    let peer1 = loop {
        tokio::select! {
            peer = ep1.next_accepted_peer() => break peer,
            peer = ep2.next_accepted_peer() => peer.close(1000),
        }
    };
    wait_connection(&client, "ep1", true).await;
    assert_eq!(state_of(&client, "ep2").await.unwrap().1, "DISCONNECTED");

    // Failover: ep1 refuses from now on and drops the connection; ep2 takes over.
    ep1.set_mode(Mode::Invalid);
    peer1.close(1000);
    let peer2 = ep2.next_accepted_peer().await;
    wait_connection(&client, "ep2", true).await;

    // No preemption: ep1 accepts again, but the service stays on ep2 for many keepalive periods (and
    // connection-task periods).
    ep1.set_mode(Mode::Valid);
    let connects_ep1 = ep1.connects();
    wait_until("several periods on ep2", || async { peer2.pings() >= 5 }).await;
    assert!(peer2.is_open());
    assert_eq!(ep1.connects(), connects_ep1, "ep1 must not be tried while ep2 is connected");
    assert_eq!(state_of(&client, "ep1").await.unwrap().1, "DISCONNECTED");

    // When the cloud side closes ep2, the service goes back to the best endpoint.
    peer2.close(1000);
    assert_eq!(peer2.closed().await, Some(1000), "the service answers the close handshake");
    let _peer1 = ep1.next_accepted_peer().await;
    wait_connection(&client, "ep1", true).await;
    wait_close_status(&client, "ep2", "NORMAL_CLOSURE").await;
    assert_eq!(state_of(&client, "ep2").await.unwrap().1, "DISCONNECTED");
    assert_eq!(service.sessions().connected().len(), 1);
    service.shutdown().await;
}

#[tokio::test]
async fn two_groups_are_connected_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let a = TestEndpoint::start(Mode::Valid).await;
    let b = TestEndpoint::start(Mode::Valid).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    add(&client, &a, "a", "sg1", 1, "ta").await;
    add(&client, &b, "b", "sg2", 1, "tb").await;
    wait_connection(&client, "a", true).await;
    wait_connection(&client, "b", true).await;
    let pa = a.next_peer().await;
    let pb = b.next_peer().await;
    assert_eq!((pa.token.as_str(), pb.token.as_str()), ("ta", "tb"));
    let sessions = service.sessions();
    wait_until("two sessions", || async { sessions.connected().len() == 2 }).await;
    assert!(sessions.of_group("sg1").is_some() && sessions.of_group("sg2").is_some());
    service.shutdown().await;
}

#[tokio::test]
async fn activate_deactivate_and_delete_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "t").await;
    let peer = endpoint.next_peer().await;
    wait_connection(&client, "ep1", true).await;

    client.update("ep1", HostState::Deactivated).await.unwrap();
    assert_eq!(peer.closed().await, Some(1000));
    wait_connection(&client, "ep1", false).await;
    assert_eq!(state_of(&client, "ep1").await.unwrap().0, "DEACTIVATED");
    let connects = endpoint.connects();

    client.update("ep1", HostState::Activated).await.unwrap();
    let peer = endpoint.next_peer().await;
    wait_connection(&client, "ep1", true).await;
    assert!(endpoint.connects() > connects);

    client.delete("ep1").await.unwrap();
    assert_eq!(peer.closed().await, Some(1000));
    assert!(client.list().await.unwrap().is_empty());
    assert_eq!(client.delete("ep1").await.unwrap_err().status(), Some(404));
    service.shutdown().await;
}

#[tokio::test]
async fn missed_pongs_close_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Freeze).await;
    let properties = nbwss_protocol::Properties {
        keep_alive_scheduled_rate: Duration::from_millis(150),
        keep_alive_max_pong_miss_allowed: 2,
        ..fast_properties()
    };
    let (service, client) = start(config(dir.path(), &primary.base_url, &primary.cert_pem), properties).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "t").await;
    let frozen = endpoint.next_peer().await;
    assert_eq!(frozen.mode, Mode::Freeze);
    endpoint.set_mode(Mode::Valid);
    wait_close_status(&client, "ep1", "CLOSED_ABNORMALLY").await;
    // Reconnected to a live connection that answers pings.
    let peer = loop {
        let peer = endpoint.next_peer().await;
        if peer.mode == Mode::Valid {
            break peer;
        }
    };
    wait_connection(&client, "ep1", true).await;
    wait_until("pings answered", || async { peer.pings() >= 3 }).await;
    assert!(peer.is_open());
    let metrics = client.metrics().await.unwrap();
    assert!(metrics.contains("nbwss_endpoint_disconnects_total{reason=\"CLOSED_ABNORMALLY\"}"), "{metrics}");
    assert!(metrics.contains("nbwss_ping_rtt_seconds_count"), "{metrics}");
    service.shutdown().await;
}

#[tokio::test]
async fn a_changed_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "t").await;
    let peer = endpoint.next_peer().await;
    wait_connection(&client, "ep1", true).await;
    let old_pem = endpoint.certificate_pem();

    endpoint.rotate_certificate();
    peer.close(1001);
    wait_close_status(&client, "ep1", "TLS_HANDSHAKE_FAILURE").await;
    assert_eq!(state_of(&client, "ep1").await.unwrap().1, "DISCONNECTED");

    // Saving with the old certificate is refused with 500 and a hint to validate again.
    let host = nbwss_protocol::HostObject {
        host_name: "ep1-again".into(),
        url: endpoint.url.clone(),
        group_id: "sg2".into(),
        priority: 1,
        token: Some(Secret::new("t")),
        certificate: Some(old_pem),
        ..Default::default()
    };
    let error = client.save(&host).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert!(error.to_string().contains("validate the host again"), "{error}");
    service.shutdown().await;
}

#[tokio::test]
async fn connections_go_through_the_configured_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let proxy = TestProxy::start().await;
    let mut config = config(dir.path(), &primary.base_url, &primary.cert_pem);
    config.proxy = ProxyConfig {
        url: Some(Secret::new(proxy.url.clone())),
        no_proxy: Vec::new(),
        use_environment: false,
    };
    let (service, client) = start(config, fast_properties()).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "t").await;
    wait_connection(&client, "ep1", true).await;
    // validatehost, save's re-check and the connection: every one through the proxy.
    assert!(proxy.tunnels.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    let peer = endpoint.next_peer().await;
    let response = peer.command(command(nbwss_protocol::Method::Get, "/netbackup/echo", &[], None)).await;
    assert_eq!(response.status_code, 200);
    service.shutdown().await;

    // Wrong proxy credentials: nothing gets through, and validatehost says why.
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::util::config(dir.path(), &primary.base_url, &primary.cert_pem);
    config.proxy = ProxyConfig {
        url: Some(Secret::new(proxy.url.replace("pa%20ss", "wrong"))),
        no_proxy: Vec::new(),
        use_environment: false,
    };
    let (service, client) = start(config, fast_properties()).await;
    let host = nbwss_protocol::HostObject {
        host_name: "ep1".into(),
        url: endpoint.url.clone(),
        group_id: "g".into(),
        priority: 1,
        ..Default::default()
    };
    let error = client.validate_host(&host).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert!(error.to_string().contains("407"), "{error}");
    service.shutdown().await;
}

#[tokio::test]
async fn requests_over_a_session_are_matched_by_id_and_released_when_it_ends() {
    use nbwss_protocol::{Body, Message};
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "t").await;
    let peer = endpoint.next_accepted_peer().await;
    let sessions = service.sessions();
    wait_until("session registered", || async { sessions.of_group("sg1").is_some() }).await;
    let session = sessions.of_group("sg1").unwrap();
    assert_eq!(session.host_name, "ep1");

    let first = Message::new(Body::NotificationRequest(Vec::new()));
    let second = Message::new(Body::NotificationRequest(Vec::new()));
    let first_rx = session.request(&first).await.unwrap();
    let second_rx = session.request(&second).await.unwrap();
    assert_eq!(peer.recv().await.id, first.id);
    assert_eq!(peer.recv().await.id, second.id);
    // Acknowledged out of order, matched by id.
    let codec = nbwss_protocol::Codec::default();
    peer.send_text(&codec.encode(&Message::with_id(second.id.clone(), Body::notification_ack())));
    assert_eq!(within("second ack", second_rx).await.unwrap().unwrap().id, second.id);

    // The session ends: the waiter for the unanswered request is released, the handle reports it.
    peer.close(1000);
    assert!(within("first waiter released", first_rx).await.is_err());
    within("session closed", session.closed()).await;
    assert!(session.is_closed());
    assert!(session.request(&Message::new(Body::NotificationRequest(Vec::new()))).await.is_err());
    service.shutdown().await;
}

/// Fail over first, retry later: the priority-1 endpoint freezes (a stopped process: TCP open, nothing
/// answered). Missed pongs end the connection, and the next attempt goes straight to priority 2, not to
/// the frozen endpoint again: priority 1 would cost a whole `connect.handshakeTimeout` (10 s by default)
/// before priority 2 is tried. Priority 1 is then not taken back while priority 2 serves (no preemption).
#[tokio::test]
async fn a_frozen_endpoint_fails_over_to_the_next_priority_within_keepalive_detection() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let ep1 = TestEndpoint::start(Mode::Valid).await;
    let ep2 = TestEndpoint::start(Mode::Valid).await;
    let relay = FreezableRelay::start(&ep1.url).await;
    let properties = nbwss_protocol::Properties {
        keep_alive_scheduled_rate: Duration::from_millis(200),
        keep_alive_max_pong_miss_allowed: 2,
        ..fast_properties()
    };
    assert_eq!(properties.connect_handshake_timeout, Duration::from_secs(10), "the default");
    let detection = properties.keep_alive_scheduled_rate * (properties.keep_alive_max_pong_miss_allowed + 1);
    let (service, client) = start(config(dir.path(), &primary.base_url, &primary.cert_pem), properties).await;
    add_at(&client, &relay.url, "ep1", "sg1", 1, "t1").await;
    wait_connection(&client, "ep1", true).await;
    add(&client, &ep2, "ep2", "sg1", 2, "t2").await;
    let peer1 = ep1.next_accepted_peer().await;

    relay.freeze();
    let frozen_at = tokio::time::Instant::now();
    let _peer2 = ep2.next_accepted_peer().await;
    wait_connection(&client, "ep2", true).await;
    let outage = frozen_at.elapsed();
    assert!(
        outage < detection + Duration::from_secs(5),
        "on priority 2 after {outage:?}: the frozen priority 1 was tried again first"
    );
    let ep1_entry = wait_close_reason(&client, "ep1", "KEEPALIVE_TIMED_OUT").await;
    assert_eq!(ep1_entry["connectionState"], "DISCONNECTED");
    assert!(peer1.is_open(), "frozen: the endpoint never saw a close");

    // No preemption: while priority 2 serves, the frozen priority 1 is not tried again.
    let connects = ep1.connects();
    wait_until("several keepalive periods on ep2", || async { _peer2.pings() >= 5 }).await;
    assert_eq!(ep1.connects(), connects);
    assert_eq!(state_of(&client, "ep1").await.unwrap().1, "DISCONNECTED");
    service.shutdown().await;
}

/// An endpoint that accepts TCP and never answers the TLS handshake costs `connect.handshakeTimeout`, not
/// the CONNECT response timeout, before the next server of the group is tried; the list says why.
#[tokio::test]
async fn a_silent_tls_handshake_costs_only_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let ep1 = TestEndpoint::start(Mode::Valid).await;
    let ep2 = TestEndpoint::start(Mode::Valid).await;
    // Validation and saving each open a connection; the service's own attempts are never answered.
    let relay = FreezableRelay::start_frozen_after(&ep1.url, 2).await;
    let properties = nbwss_protocol::Properties {
        connect_handshake_timeout: Duration::from_secs(1),
        connect_response_timeout: Duration::from_secs(30),
        ..fast_properties()
    };
    let (service, client) = start(config(dir.path(), &primary.base_url, &primary.cert_pem), properties).await;
    let added = tokio::time::Instant::now();
    add_at(&client, &relay.url, "ep1", "sg1", 1, "t1").await;
    add(&client, &ep2, "ep2", "sg1", 2, "t2").await;
    wait_connection(&client, "ep2", true).await;
    let waited = added.elapsed();
    // Far below the 30 s CONNECT response timeout that bounded the handshake before.
    assert!(waited < Duration::from_secs(1 + 10), "on priority 2 after {waited:?}");
    let entry = wait_close_reason(&client, "ep1", "TLS_HANDSHAKE_TIMED_OUT").await;
    assert!(
        entry["lastClose"]["description"].as_str().unwrap().contains("connect.handshakeTimeout"),
        "{entry}"
    );
    assert!(entry["attemptsSinceLastSuccess"].as_u64().unwrap() >= 1, "{entry}");
    assert_eq!(ep1.connects(), 0, "no attempt got through to ep1");
    service.shutdown().await;
}

/// Why a connection closed, for each failure an administrator meets: `servers list --json` (the list API)
/// names it in words, with its time and the attempts since the last success; never the token, only its
/// fingerprint.
#[tokio::test]
async fn each_close_reason_is_listed_after_its_failure() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let properties = nbwss_protocol::Properties {
        connect_response_timeout: Duration::from_millis(500),
        keep_alive_scheduled_rate: Duration::from_millis(200),
        keep_alive_max_pong_miss_allowed: 2,
        message_max_bytes: 64 * 1024,
        ..fast_properties()
    };
    let (service, client) = start(config(dir.path(), &primary.base_url, &primary.cert_pem), properties).await;
    let finish = |host: &'static str| {
        let client = client.clone();
        async move { client.delete(host).await.unwrap() }
    };

    // Refused, timed out or garbled at CONNECT: counted as failed attempts.
    for (mode, host, reason) in [
        (Mode::Invalid, "refused", "TOKEN_REFUSED"),
        (Mode::Silent, "silent", "CONNECT_TIMED_OUT"),
        (Mode::WrongId, "wrong-id", "CONNECT_RESPONSE_INVALID"),
    ] {
        let endpoint = TestEndpoint::start(mode).await;
        add(&client, &endpoint, host, host, 1, "secret-token").await;
        let entry = wait_close_reason(&client, host, reason).await;
        wait_until(&format!("{host}: a second attempt"), || async {
            listed(&client, host).await["attemptsSinceLastSuccess"].as_u64().unwrap() >= 2
        })
        .await;
        assert!(entry["lastClose"]["description"].as_str().is_some_and(|text| !text.is_empty()), "{entry}");
        assert!(entry["lastClose"]["at"].as_str().unwrap().ends_with('Z'), "{entry}");
        assert_eq!(entry["tokenFingerprint"], "sha256:930bbdc51b6aed5c", "{entry}");
        assert!(!entry.to_string().contains("secret-token"), "{entry}");
        finish(host).await;
    }

    // Established, then ended by the endpoint, the network or the administrator.
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let relay = FreezableRelay::start(&endpoint.url).await;
    add_at(&client, &relay.url, "ended", "ended", 1, "t").await;
    let peer = endpoint.next_accepted_peer().await;
    wait_connection(&client, "ended", true).await;
    assert_eq!(listed(&client, "ended").await["attemptsSinceLastSuccess"], 0);
    peer.close(4000);
    let entry = wait_close_reason(&client, "ended", "CLOSED_BY_ENDPOINT").await;
    assert!(entry["lastClose"]["description"].as_str().unwrap().contains("4000"), "{entry}");
    let peer = endpoint.next_accepted_peer().await;
    peer.send_binary(vec![1, 2, 3]);
    wait_close_reason(&client, "ended", "PROTOCOL_ERROR").await;
    let peer = endpoint.next_accepted_peer().await;
    peer.send_text(&format!("{{\"pad\":\"{}\"}}", "x".repeat(200 * 1024)));
    wait_close_reason(&client, "ended", "MESSAGE_TOO_BIG").await;
    let _peer = endpoint.next_accepted_peer().await;
    wait_connection(&client, "ended", true).await;
    relay.cut();
    wait_close_reason(&client, "ended", "CONNECTION_LOST").await;
    let _peer = endpoint.next_accepted_peer().await;
    wait_connection(&client, "ended", true).await;
    endpoint.set_mode(Mode::Freeze);
    relay.cut();
    wait_close_reason(&client, "ended", "KEEPALIVE_TIMED_OUT").await;
    endpoint.set_mode(Mode::Valid);
    wait_connection(&client, "ended", true).await;
    client.update("ended", nbwss_protocol::HostState::Deactivated).await.unwrap();
    wait_close_reason(&client, "ended", "SERVER_CHANGED").await;
    finish("ended").await;

    // Unreachable: the endpoint is gone.
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    add(&client, &endpoint, "gone", "gone", 1, "t").await;
    wait_connection(&client, "gone", true).await;
    drop(endpoint);
    let entry = wait_close_reason(&client, "gone", "ENDPOINT_UNREACHABLE").await;
    assert_eq!(entry["connectionState"], "DISCONNECTED");
    finish("gone").await;

    // Not a WebSocket endpoint at that path: an HTTPS server that answers the upgrade with 200.
    let not_websocket = format!("{}/echo", primary.base_url.replace("https://", "wss://"));
    add_at(&client, &not_websocket, "plain-https", "plain-https", 1, "t").await;
    let entry = wait_close_reason(&client, "plain-https", "WEBSOCKET_UPGRADE_FAILED").await;
    assert!(entry["lastClose"]["description"].as_str().unwrap().contains("WebSocket handshake"), "{entry}");
    finish("plain-https").await;

    // A renewed certificate: the one presented is shown beside the pinned one, with the command to accept.
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    add(&client, &endpoint, "renewed", "renewed", 1, "t").await;
    let peer = endpoint.next_accepted_peer().await;
    let pinned = listed(&client, "renewed").await["sha256Fingerprint"].clone();
    endpoint.rotate_certificate();
    peer.close(1001);
    let entry = wait_close_reason(&client, "renewed", "CERTIFICATE_CHANGED").await;
    let presented = nbwss_service::CertificateInfo::from_pem(&endpoint.certificate_pem()).unwrap().sha256;
    assert_eq!(entry["presentedCertificate"]["sha256Fingerprint"], presented.as_str(), "{entry}");
    assert_eq!(entry["presentedCertificate"]["acceptCommand"], "nbwss servers update renewed");
    assert_eq!(entry["sha256Fingerprint"], pinned, "the pin is unchanged until accepted");
    assert!(entry["lastClose"]["description"].as_str().unwrap().contains(&presented), "{entry}");
    finish("renewed").await;
    service.shutdown().await;
}
