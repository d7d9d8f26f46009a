//! A webhook receiver for tests: HTTPS on 127.0.0.1:0 with a self-signed certificate of its own (its PEM is
//! the CA a subscription trusts), recording every request, and answering as the test's script says. Shared
//! by the endpoint's tests and the command line's (`#[path]`).
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::future::BoxFuture;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its place among the requests received (0 first).
    pub index: usize,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    /// What the script answered, once it did.
    pub status: Option<u16>,
}

impl Request {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// Whether the signature verifies under `secret` (`whsec_...`), computed here from the specification:
    /// HMAC-SHA256 of `{id}.{timestamp}.{body}`, base64, after `v1,`.
    pub fn verifies(&self, secret: &str) -> bool {
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
            .expect("base64");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let signed = format!("{}.{}.{}", self.id, self.timestamp, self.body);
        let expected = ring::hmac::sign(&key, signed.as_bytes());
        let expected = base64::engine::general_purpose::STANDARD.encode(expected.as_ref());
        self.signature.split(' ').any(|each| each.strip_prefix("v1,") == Some(expected.as_str()))
    }
}

/// What the script answers.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<u32>,
    pub location: Option<&'static str>,
}

impl From<u16> for Reply {
    fn from(status: u16) -> Self {
        Self { status, retry_after: None, location: None }
    }
}

type Script = Arc<dyn Fn(usize) -> BoxFuture<'static, Reply> + Send + Sync>;

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<Request>>>,
    script: Script,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// `https://127.0.0.1:PORT/hook`.
    pub url: String,
    /// `https://localhost:PORT/hook` (the same receiver, by name).
    pub url_by_name: String,
    /// Its certificate: the CA to trust for it.
    pub ca_pem: String,
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    handle: axum_server::Handle<SocketAddr>,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub async fn ok() -> Self {
        Self::start(|_| async { Reply::from(200) }).await
    }

    /// A receiver answering the n-th request (0 first) with `script(n)`.
    pub async fn start<F, Fut, R>(script: F) -> Self
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Into<Reply>,
    {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let ca_pem = generated.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![generated.cert.der().clone()], key)
                .unwrap();
        let script = Arc::new(script);
        let script: Script = Arc::new(move |index| {
            let script = script.clone();
            Box::pin(async move { script(index).await.into() })
        });
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared { requests: requests.clone(), script };
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(shared);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
        )
        .unwrap()
        .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Self {
            url: format!("https://127.0.0.1:{}/hook", address.port()),
            url_by_name: format!("https://localhost:{}/hook", address.port()),
            ca_pem,
            address,
            requests,
            handle,
        }
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.status.is_some_and(|s| (200..300).contains(&s))).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let index = {
        let mut requests = shared.requests.lock().unwrap();
        let index = requests.len();
        requests.push(Request {
            index,
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            content_type: header("content-type"),
            body: String::from_utf8_lossy(&body).into_owned(),
            status: None,
        });
        index
    };
    let reply = (shared.script)(index).await;
    shared.requests.lock().unwrap()[index].status = Some(reply.status);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), "receiver says so").into_response();
    if let Some(seconds) = reply.retry_after {
        response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
    }
    if let Some(location) = reply.location {
        response.headers_mut().insert("location", HeaderValue::from_static(location));
    }
    response
}
