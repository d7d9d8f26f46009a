//! Outbound TCP to endpoints, directly or through an HTTP CONNECT proxy (with basic auth), chosen from
//! the configuration or from `HTTPS_PROXY`/`NO_PROXY`.

use std::time::Duration;

use anyhow::Context as _;
use nbwss_protocol::Secret;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::config::ProxyConfig;

/// How long a TCP connect (and the proxy's answer) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer head accepted from a proxy.
const MAX_PROXY_HEAD: u64 = 16 * 1024;

/// A parsed `http://[user:password@]host:port` proxy URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    host: String,
    port: u16,
    /// `user:password`, for `Proxy-Authorization: Basic`.
    credentials: Option<Secret>,
}

impl ProxyUrl {
    /// Parses a proxy URL; only `http://` proxies (CONNECT over plain TCP) are supported.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text)
            .map_err(|_| "is not a URL; use http://[user:password@]host:port".to_owned())?;
        if url.scheme() != "http" {
            return Err(format!(
                "scheme '{}' is not supported; use an HTTP CONNECT proxy: http://[user:password@]host:port",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("must name a host")?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let credentials = if url.username().is_empty() {
            None
        } else {
            let decode =
                |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
            let user = decode(url.username());
            let password = decode(url.password().unwrap_or_default());
            Some(Secret::new(format!("{user}:{password}")))
        };
        Ok(Self { host, port, credentials })
    }
}

/// Where outbound connections go.
#[derive(Debug, Clone, Default)]
pub struct Connector {
    proxy: Option<ProxyUrl>,
    no_proxy: Vec<String>,
}

impl Connector {
    /// The connector for a configuration: its proxy, else (if allowed) the environment's
    /// `HTTPS_PROXY`/`NO_PROXY`.
    pub fn from_config(config: &ProxyConfig) -> anyhow::Result<Self> {
        Self::from_config_and_env(config, |name| std::env::var(name).ok())
    }

    /// As [`from_config`](Self::from_config), reading environment variables through `env`.
    pub fn from_config_and_env(
        config: &ProxyConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        if let Some(url) = &config.url {
            let proxy =
                ProxyUrl::parse(url.expose()).map_err(|problem| anyhow::anyhow!("proxy.url: {problem}"))?;
            return Ok(Self { proxy: Some(proxy), no_proxy: config.no_proxy.clone() });
        }
        if config.use_environment {
            let first =
                |names: &[&str]| names.iter().find_map(|name| env(name).filter(|value| !value.is_empty()));
            if let Some(text) = first(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) {
                let text = if text.contains("://") { text } else { format!("http://{text}") };
                let proxy =
                    ProxyUrl::parse(&text).map_err(|problem| anyhow::anyhow!("HTTPS_PROXY: {problem}"))?;
                let mut no_proxy = config.no_proxy.clone();
                if let Some(list) = first(&["NO_PROXY", "no_proxy"]) {
                    no_proxy.extend(
                        list.split(',').map(|item| item.trim().to_owned()).filter(|item| !item.is_empty()),
                    );
                }
                return Ok(Self { proxy: Some(proxy), no_proxy });
            }
        }
        Ok(Self::default())
    }

    /// Whether `host` is reached through the proxy.
    pub fn uses_proxy_for(&self, host: &str) -> bool {
        self.proxy.is_some() && !self.no_proxy.iter().any(|rule| no_proxy_matches(rule, host))
    }

    /// Opens a TCP connection to `host:port`, through the proxy when one applies, with `TCP_NODELAY`:
    /// every write on it is a whole WebSocket message (or a flush of several), which Nagle's algorithm
    /// would only delay.
    pub async fn connect(&self, host: &str, port: u16) -> anyhow::Result<TcpStream> {
        let stream = self.connect_tcp(host, port).await?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(host, port, "cannot set TCP_NODELAY: {error}");
        }
        Ok(stream)
    }

    async fn connect_tcp(&self, host: &str, port: u16) -> anyhow::Result<TcpStream> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match &self.proxy {
            Some(proxy) if self.uses_proxy_for(bare) => {
                tokio::time::timeout(CONNECT_TIMEOUT, tunnel(proxy, host, port)).await.map_err(|_| {
                    anyhow::anyhow!("the proxy {}:{} did not answer in time", proxy.host, proxy.port)
                })?
            }
            _ => tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((bare, port)))
                .await
                .map_err(|_| anyhow::anyhow!("connecting to {host}:{port} timed out"))?
                .with_context(|| format!("cannot reach {host}:{port}")),
        }
    }
}

fn no_proxy_matches(rule: &str, host: &str) -> bool {
    let rule = rule.trim().to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let rule = rule.split(':').next().unwrap_or_default().to_owned();
    if rule == "*" {
        return true;
    }
    let suffix = rule.trim_start_matches('*').trim_start_matches('.');
    !suffix.is_empty() && (host == suffix || host.ends_with(&format!(".{suffix}")))
}

async fn tunnel(proxy: &ProxyUrl, host: &str, port: u16) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .with_context(|| format!("cannot reach the proxy {}:{}", proxy.host, proxy.port))?;
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = &proxy.credentials {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials.expose());
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.context("cannot talk to the proxy")?;
    // Read the answer's head byte by byte-line so no tunnelled byte is consumed, and at most
    // MAX_PROXY_HEAD bytes of it: a proxy that never ends its head costs no more.
    let mut reader = BufReader::with_capacity(1, (&mut stream).take(MAX_PROXY_HEAD));
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.context("the proxy closed the connection")?;
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line).await.context("the proxy closed the connection")?;
        if read == 0 && reader.get_ref().limit() == 0 {
            anyhow::bail!(
                "the proxy {}:{} answered with a head longer than {MAX_PROXY_HEAD} bytes",
                proxy.host,
                proxy.port
            );
        }
        if read == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    drop(reader);
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    match status {
        "200" => Ok(stream),
        "407" => anyhow::bail!("the proxy {}:{} refused the credentials (407)", proxy.host, proxy.port),
        _ => anyhow::bail!(
            "the proxy {}:{} refused to connect to {authority}: {}",
            proxy.host,
            proxy.port,
            status_line.trim()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let proxy = ProxyUrl::parse("http://u%40x:p%3Aw@proxy:3128").unwrap();
        assert_eq!(proxy.port, 3128);
        assert_eq!(proxy.credentials.unwrap().expose(), "u@x:p:w");
        assert!(ProxyUrl::parse("socks5://proxy").is_err());
        assert!(ProxyUrl::parse("proxy:3128").is_err());
    }

    #[test]
    fn environment_proxy_and_no_proxy() {
        let env = |name: &str| match name {
            "HTTPS_PROXY" => Some("proxy.example:3128".to_owned()),
            "NO_PROXY" => Some("localhost, .internal.example".to_owned()),
            _ => None,
        };
        let connector = Connector::from_config_and_env(&ProxyConfig::default(), env).unwrap();
        assert!(connector.uses_proxy_for("cloud.example.com"));
        assert!(!connector.uses_proxy_for("localhost"));
        assert!(!connector.uses_proxy_for("a.internal.example"));
        let ignored = ProxyConfig { use_environment: false, ..ProxyConfig::default() };
        assert!(!Connector::from_config_and_env(&ignored, env).unwrap().uses_proxy_for("cloud.example.com"));
        let configured = ProxyConfig {
            url: Some(Secret::new("http://u:p@configured:8080")),
            no_proxy: vec!["skip.example".into()],
            use_environment: true,
        };
        let connector = Connector::from_config_and_env(&configured, env).unwrap();
        assert_eq!(connector.proxy.as_ref().unwrap().host, "configured");
        assert!(!connector.uses_proxy_for("skip.example") && connector.uses_proxy_for("localhost"));
    }

    #[test]
    fn no_proxy_rules() {
        assert!(no_proxy_matches("example.com", "example.com"));
        assert!(no_proxy_matches(".example.com", "a.example.com"));
        assert!(no_proxy_matches("*.example.com", "a.example.com"));
        assert!(!no_proxy_matches("example.com", "badexample.com"));
        assert!(no_proxy_matches("*", "anything"));
        assert!(no_proxy_matches("127.0.0.1", "127.0.0.1"));
    }
}
