//! A byte tunnel with the relay's hops and none of its parsing, the baseline `nbwss bench relay` compares
//! the relay with: a TCP entry (where the endpoint's app API would be) → one TLS WebSocket connection per
//! client connection (where the service's wss connection would be) → a TCP connection to the emulator.
//! The client's own TLS session runs end to end through it, as through a general-purpose tunnel such as
//! rathole with its WebSocket-over-TLS transport. It exists in the benchmark only.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Bytes read from a TCP socket at a time (one WebSocket message each).
const READ_CHUNK: usize = 16 * 1024;
/// tungstenite's read buffer: it zero-fills the whole buffer on every read, so its default of 128 KiB
/// would cost the baseline more than moving the bytes does.
const WEBSOCKET_READ_BUFFER: usize = 4 * 1024;

fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(WEBSOCKET_READ_BUFFER)
}

/// A running tunnel; its tasks end when the runtime does.
pub(crate) struct Tunnel {
    /// Where clients connect (plain TCP; their TLS goes through to the upstream).
    pub(crate) entry: SocketAddr,
    tasks: tokio::task::JoinSet<()>,
}

impl Tunnel {
    /// Starts a tunnel to `upstream` on 127.0.0.1.
    pub(crate) async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .context("generating the tunnel's certificate")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![certified.cert.der().clone()];
        let key = PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes())
            .context("reading the tunnel's key")?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the tunnel's TLS configuration")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(certified.cert.der().to_vec())).context("trusting the tunnel")?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));

        let exit_listener = TcpListener::bind("127.0.0.1:0").await.context("binding the tunnel's exit")?;
        let exit = exit_listener.local_addr()?;
        let entry_listener = TcpListener::bind("127.0.0.1:0").await.context("binding the tunnel's entry")?;
        let entry = entry_listener.local_addr()?;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            while let Ok((socket, _)) = exit_listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = exit_connection(socket, acceptor, upstream).await;
                });
            }
        });
        tasks.spawn(async move {
            while let Ok((socket, _)) = entry_listener.accept().await {
                let connector = connector.clone();
                tokio::spawn(async move {
                    let _ = entry_connection(socket, connector, exit).await;
                });
            }
        });
        Ok(Self { entry, tasks })
    }

    pub(crate) fn shutdown(mut self) {
        self.tasks.abort_all();
    }
}

/// A client connection at the entry: one wss connection to the exit carries its bytes.
async fn entry_connection(
    socket: TcpStream,
    connector: tokio_rustls::TlsConnector,
    exit: SocketAddr,
) -> anyhow::Result<()> {
    socket.set_nodelay(true)?;
    let tcp = TcpStream::connect(exit).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(ServerName::IpAddress(exit.ip().into()), tcp).await?;
    let (websocket, _) = tokio_tungstenite::client_async_with_config(
        format!("wss://{exit}/tunnel"),
        tls,
        Some(websocket_config()),
    )
    .await?;
    pump(socket, websocket).await
}

/// A wss connection at the exit: its bytes go to a new connection to the upstream.
async fn exit_connection(
    socket: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: SocketAddr,
) -> anyhow::Result<()> {
    socket.set_nodelay(true)?;
    let tls = acceptor.accept(socket).await?;
    let websocket = tokio_tungstenite::accept_async_with_config(tls, Some(websocket_config())).await?;
    let tcp = TcpStream::connect(upstream).await?;
    tcp.set_nodelay(true)?;
    pump(tcp, websocket).await
}

/// Copies bytes both ways between a TCP socket and a WebSocket (binary messages) until either side ends.
async fn pump<S>(socket: TcpStream, websocket: WebSocketStream<S>) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut socket_read, mut socket_write) = socket.into_split();
    let (mut sink, mut stream) = websocket.split();
    let upward = async {
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            let read = socket_read.read(&mut buffer).await?;
            if read == 0 {
                let _ = sink.close().await;
                return Ok::<_, anyhow::Error>(());
            }
            sink.send(Message::binary(buffer[..read].to_vec())).await?;
        }
    };
    let downward = async {
        while let Some(message) = stream.next().await {
            match message? {
                Message::Binary(bytes) => socket_write.write_all(&bytes).await?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        socket_write.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    };
    tokio::select! {
        result = upward => result,
        result = downward => result,
    }
}
