//! Service configuration: a TOML file for what the guide does not cover, plus `nbwss.properties`.
//!
//! The configuration is data: parsed with `deny_unknown_fields`, validated once by [`ServiceConfig::validate`]
//! (every error names the key and the fix), and safe to log (secrets are [`Secret`]s).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nbwss_protocol::{Method, Properties, PropertyWarning, Secret};
use serde::{Deserialize, Serialize};

/// Default admin listener: loopback, a port chosen by the system.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:0";
/// Default number of rotated log files kept.
pub const DEFAULT_LOG_MAX_FILES: usize = 7;
/// Default size at which `audit.log` rotates: 10 MiB.
pub const DEFAULT_AUDIT_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of audit files kept (`audit.log` and four rotated ones): 50 MiB at most.
pub const DEFAULT_AUDIT_MAX_FILES: usize = 5;
/// Default excerpt of a request body in an audit line: 4 KiB.
pub const DEFAULT_AUDIT_BODY_MAX_BYTES: usize = 4 * 1024;

/// The service's configuration file (`nbwss service run --config FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Directory for the WebSocket servers store, keys, the admin certificate, logs and the audit log.
    pub data_dir: PathBuf,
    /// The NetBackup primary server whose REST API is relayed.
    pub primary: PrimaryConfig,
    /// The admin listener (the `wssendpoints` API, `/metrics`, `/healthz`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Outbound HTTP CONNECT proxy for connections to endpoints.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Relay policy: which COMMANDs may run.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Endpoint providers (the `validateurl` call).
    #[serde(default)]
    pub providers: ProvidersConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Path of an `nbwss.properties` file (relative paths are relative to the configuration file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties_file: Option<PathBuf>,
    /// Properties given inline, with the guide's key names (`"connectionInfo.period" = 60`); they override
    /// the file's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<toml::Table>,
}

/// The primary server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryConfig {
    /// Base URL of the REST API, e.g. `https://localhost:1556/netbackup`.
    pub base_url: String,
    /// PEM file with the certificate(s) to trust for the primary server, exactly; without it (and without
    /// `ca_pem`) the system's roots are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The same as `ca_file`, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The service's own credentials on the primary server (used to poll for notifications, never added to
    /// relayed calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PrimaryCredentials>,
}

/// The service's own login on the primary server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryCredentials {
    /// User name for `POST /login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Password for `POST /login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// `domainType` for `POST /login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_type: Option<String>,
    /// `domainName` for `POST /login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// An API key, used instead of user and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; loopback by default. Port 0 lets the system choose (written to `admin.json`).
    #[serde(default = "default_admin_bind")]
    pub bind: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { bind: default_admin_bind() }
    }
}

fn default_admin_bind() -> String {
    DEFAULT_ADMIN_BIND.to_owned()
}

/// Outbound proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// `http://[user:password@]host:port` of an HTTP CONNECT proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Hosts reached directly: exact names, `.suffix` / `*.suffix` domains, IP addresses, or `*`.
    #[serde(default)]
    pub no_proxy: Vec<String>,
    /// Use `HTTPS_PROXY`/`NO_PROXY` from the environment when `url` is not set (default true).
    #[serde(default = "default_true")]
    pub use_environment: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self { url: None, no_proxy: Vec::new(), use_environment: true }
    }
}

fn default_true() -> bool {
    true
}

/// The relay's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rules; when empty, everything under `/netbackup/` is allowed.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
}

/// One allow rule: a method (or `*`) and a path pattern where `*` matches any characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `GET`, `POST`, ... or `*`.
    #[serde(default = "default_any")]
    pub method: String,
    /// Path pattern, e.g. `/netbackup/admin/jobs*`; the query string is not part of the match.
    pub path: String,
}

fn default_any() -> String {
    "*".to_owned()
}

/// Endpoint providers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// Extra CA certificates (PEM) to trust for provider URLs, besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Write a daily-rotated log file `logs/nbwss-service.log.*` in the data directory (default true).
    #[serde(default = "default_true")]
    pub file: bool,
    /// How many rotated files to keep.
    #[serde(default = "default_max_files")]
    pub max_files: usize,
    /// Write `audit.log` (one JSON line per relayed call) in the data directory (default true).
    #[serde(default = "default_true")]
    pub audit: bool,
    /// Rotate `audit.log` when it would pass this many bytes (default 10 MiB).
    #[serde(default = "default_audit_max_file_bytes")]
    pub audit_max_file_bytes: u64,
    /// Audit files kept, `audit.log` included (default 5): at most this many × `audit_max_file_bytes`.
    #[serde(default = "default_audit_max_files")]
    pub audit_max_files: usize,
    /// Bytes of each request body (redacted) quoted in an audit line, at most (default 4 KiB).
    #[serde(default = "default_audit_body_max_bytes")]
    pub audit_body_max_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            file: true,
            max_files: DEFAULT_LOG_MAX_FILES,
            audit: true,
            audit_max_file_bytes: DEFAULT_AUDIT_MAX_FILE_BYTES,
            audit_max_files: DEFAULT_AUDIT_MAX_FILES,
            audit_body_max_bytes: DEFAULT_AUDIT_BODY_MAX_BYTES,
        }
    }
}

fn default_audit_max_file_bytes() -> u64 {
    DEFAULT_AUDIT_MAX_FILE_BYTES
}

fn default_audit_max_files() -> usize {
    DEFAULT_AUDIT_MAX_FILES
}

fn default_audit_body_max_bytes() -> usize {
    DEFAULT_AUDIT_BODY_MAX_BYTES
}

fn default_max_files() -> usize {
    DEFAULT_LOG_MAX_FILES
}

/// A configuration that cannot be used: names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The offending key, e.g. `primary.base_url`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { key: key.into(), problem: problem.into() }
    }
}

impl ServiceConfig {
    /// A configuration with defaults: the given data directory and primary server, trusting exactly
    /// `primary_ca_pem` (or the system roots when `None`). The environment's proxy variables are ignored
    /// (set `proxy` explicitly to use a proxy); convenient for tests and `nbwss up`.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        primary_base_url: impl Into<String>,
        primary_ca_pem: Option<String>,
    ) -> Self {
        Self {
            data_dir: data_dir.into(),
            primary: PrimaryConfig {
                base_url: primary_base_url.into(),
                ca_file: None,
                ca_pem: primary_ca_pem,
                credentials: None,
            },
            admin: AdminConfig::default(),
            proxy: ProxyConfig { use_environment: false, ..ProxyConfig::default() },
            policy: PolicyConfig::default(),
            providers: ProvidersConfig::default(),
            log: LogConfig { file: false, ..LogConfig::default() },
            properties_file: None,
            properties: None,
        }
    }

    /// Reads a TOML configuration file; relative paths in it are resolved against the file's directory.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config: Self = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid service configuration", path.display()))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.data_dir);
        if let Some(file) = config.primary.ca_file.as_mut() {
            resolve(file);
        }
        if let Some(file) = config.providers.ca_file.as_mut() {
            resolve(file);
        }
        if let Some(file) = config.properties_file.as_mut() {
            resolve(file);
        }
        Ok(config)
    }

    /// Checks every value; the first problem found is returned, naming its key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("data_dir", "must name a directory (it is created if missing)"));
        }
        let base = url::Url::parse(&self.primary.base_url).map_err(|error| {
            ConfigError::new(
                "primary.base_url",
                format!(
                    "'{}' is not a URL ({error}); use e.g. https://localhost:1556/netbackup",
                    self.primary.base_url
                ),
            )
        })?;
        if base.scheme() != "https" {
            return Err(ConfigError::new(
                "primary.base_url",
                "must start with https:// (the primary server's REST API is served over TLS only)",
            ));
        }
        if base.host_str().is_none() || base.query().is_some() || base.fragment().is_some() {
            return Err(ConfigError::new(
                "primary.base_url",
                "must be a base URL with a host and no query or fragment, e.g. https://localhost:1556/netbackup",
            ));
        }
        if self.primary.ca_file.is_some() && self.primary.ca_pem.is_some() {
            return Err(ConfigError::new("primary.ca_file", "give either ca_file or ca_pem, not both"));
        }
        if let Some(file) = &self.primary.ca_file {
            let pem = std::fs::read_to_string(file).map_err(|error| {
                ConfigError::new("primary.ca_file", format!("cannot read {}: {error}", file.display()))
            })?;
            crate::tls::parse_pem_certificates(&pem).map_err(|error| {
                ConfigError::new("primary.ca_file", format!("{}: {error}", file.display()))
            })?;
        }
        if let Some(pem) = &self.primary.ca_pem {
            crate::tls::parse_pem_certificates(pem)
                .map_err(|error| ConfigError::new("primary.ca_pem", error.to_string()))?;
        }
        if let Some(credentials) = &self.primary.credentials {
            let has_user = credentials.user_name.is_some() && credentials.password.is_some();
            if !has_user && credentials.api_key.is_none() {
                return Err(ConfigError::new(
                    "primary.credentials",
                    "give user_name and password, or api_key",
                ));
            }
        }
        self.admin_bind()?;
        if let Some(url) = &self.proxy.url {
            crate::proxy::ProxyUrl::parse(url.expose())
                .map_err(|problem| ConfigError::new("proxy.url", problem))?;
        }
        for (index, rule) in self.policy.allow.iter().enumerate() {
            if rule.method != "*" && Method::parse(&rule.method).is_none() {
                return Err(ConfigError::new(
                    format!("policy.allow[{index}].method"),
                    format!(
                        "'{}' is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or *",
                        rule.method
                    ),
                ));
            }
            if !rule.path.starts_with("/netbackup/") {
                return Err(ConfigError::new(
                    format!("policy.allow[{index}].path"),
                    format!("'{}' must start with /netbackup/", rule.path),
                ));
            }
            // Rules match the path as the primary server reads it, so a rule must be written that way.
            match nbwss_protocol::check_command_uri(&rule.path) {
                Ok(uri) if uri.path == rule.path => {}
                Ok(uri) => {
                    return Err(ConfigError::new(
                        format!("policy.allow[{index}].path"),
                        format!(
                            "'{}' is read by the primary server as '{}' (no query, no doubled slashes, no percent-escapes); write that",
                            rule.path, uri.path
                        ),
                    ))
                }
                Err(problem) => {
                    return Err(ConfigError::new(
                        format!("policy.allow[{index}].path"),
                        format!("'{}' {problem}", rule.path),
                    ))
                }
            }
        }
        if let Some(file) = &self.providers.ca_file {
            let pem = std::fs::read_to_string(file).map_err(|error| {
                ConfigError::new("providers.ca_file", format!("cannot read {}: {error}", file.display()))
            })?;
            crate::tls::parse_pem_certificates(&pem)
                .map_err(|error| ConfigError::new("providers.ca_file", error.to_string()))?;
        }
        if self.log.max_files == 0 {
            return Err(ConfigError::new("log.max_files", "must be at least 1"));
        }
        if !(64 * 1024..=1 << 40).contains(&self.log.audit_max_file_bytes) {
            return Err(ConfigError::new(
                "log.audit_max_file_bytes",
                format!(
                    "{} is not allowed: use 65536 (64 KiB) to 1099511627776 (1 TiB)",
                    self.log.audit_max_file_bytes
                ),
            ));
        }
        if !(1..=1000).contains(&self.log.audit_max_files) {
            return Err(ConfigError::new(
                "log.audit_max_files",
                format!("{} is not allowed: use 1 to 1000 (audit.log included)", self.log.audit_max_files),
            ));
        }
        if self.log.audit_body_max_bytes > 1024 * 1024 {
            return Err(ConfigError::new(
                "log.audit_body_max_bytes",
                format!("{} is not allowed: use 0 to 1048576 (1 MiB)", self.log.audit_body_max_bytes),
            ));
        }
        self.properties()?;
        Ok(())
    }

    /// The admin listener's address.
    pub fn admin_bind(&self) -> Result<SocketAddr, ConfigError> {
        self.admin.bind.parse().map_err(|_| {
            ConfigError::new(
                "admin.bind",
                format!(
                    "'{}' is not an IP address and port, e.g. 127.0.0.1:0 or 127.0.0.1:8553",
                    self.admin.bind
                ),
            )
        })
    }

    /// The PEM text of the primary server's trusted certificates, when configured.
    pub fn primary_ca_pem(&self) -> Result<Option<String>, ConfigError> {
        if let Some(pem) = &self.primary.ca_pem {
            return Ok(Some(pem.clone()));
        }
        match &self.primary.ca_file {
            Some(file) => std::fs::read_to_string(file).map(Some).map_err(|error| {
                ConfigError::new("primary.ca_file", format!("cannot read {}: {error}", file.display()))
            }),
            None => Ok(None),
        }
    }

    /// The service properties: the `properties_file` (if any), overridden by inline `properties`.
    pub fn properties(&self) -> Result<(Properties, Vec<PropertyWarning>), ConfigError> {
        let mut text = String::new();
        if let Some(file) = &self.properties_file {
            text = std::fs::read_to_string(file).map_err(|error| {
                ConfigError::new("properties_file", format!("cannot read {}: {error}", file.display()))
            })?;
            text.push('\n');
        }
        if let Some(table) = &self.properties {
            for (key, value) in table {
                let value = match value {
                    toml::Value::String(text) => text.clone(),
                    toml::Value::Integer(number) => number.to_string(),
                    toml::Value::Boolean(flag) => flag.to_string(),
                    other => {
                        return Err(ConfigError::new(
                            format!("properties.\"{key}\""),
                            format!("must be a string, integer or boolean, not {}", other.type_str()),
                        ))
                    }
                };
                text.push_str(&format!("{key}={value}\n"));
            }
        }
        Properties::parse(&text).map_err(|error| {
            ConfigError::new(
                error.key.clone(),
                format!("'{}' is not allowed: use {}", error.value, error.allowed),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> &'static str {
        r#"
data_dir = "/var/lib/nbwss"
[primary]
base_url = "https://localhost:1556/netbackup"
"#
    }

    #[test]
    fn minimal_file_has_defaults() {
        let config: ServiceConfig = toml::from_str(minimal()).unwrap();
        assert_eq!(config.admin.bind, "127.0.0.1:0");
        assert!(config.proxy.use_environment);
        assert!(config.log.file);
        config.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = format!("{}\nmystery = 1\n", minimal());
        let error = toml::from_str::<ServiceConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("mystery"), "{error}");
    }

    #[test]
    fn errors_name_the_key() {
        let mut config: ServiceConfig = toml::from_str(minimal()).unwrap();
        config.primary.base_url = "http://localhost:1556/netbackup".into();
        assert_eq!(config.validate().unwrap_err().key, "primary.base_url");
        let mut config: ServiceConfig = toml::from_str(minimal()).unwrap();
        config.admin.bind = "localhost".into();
        assert_eq!(config.validate().unwrap_err().key, "admin.bind");
        let mut config: ServiceConfig = toml::from_str(minimal()).unwrap();
        config.proxy.url = Some(Secret::new("socks5://proxy:1080"));
        assert_eq!(config.validate().unwrap_err().key, "proxy.url");
        let mut config: ServiceConfig = toml::from_str(minimal()).unwrap();
        config.policy.allow.push(AllowRule { method: "FETCH".into(), path: "/netbackup/*".into() });
        assert_eq!(config.validate().unwrap_err().key, "policy.allow[0].method");
        for path in ["/netbackup/admin/jobs/../config*", "/netbackup//admin/jobs*", "/netbackup/%61dmin/*"] {
            let mut config: ServiceConfig = toml::from_str(minimal()).unwrap();
            config.policy.allow.push(AllowRule { method: "GET".into(), path: path.into() });
            assert_eq!(config.validate().unwrap_err().key, "policy.allow[0].path", "{path}");
        }
        let mut config: ServiceConfig = toml::from_str(minimal()).unwrap();
        config.primary.ca_file = Some("/nonexistent/ca.pem".into());
        assert_eq!(config.validate().unwrap_err().key, "primary.ca_file");
    }

    #[test]
    fn inline_properties_are_checked() {
        let text = format!("{}\n[properties]\n\"connectionInfo.period\" = 5\n", minimal());
        let config: ServiceConfig = toml::from_str(&text).unwrap();
        let (properties, _) = config.properties().unwrap();
        assert_eq!(properties.connection_info_period, std::time::Duration::from_secs(5));
        let text = format!("{}\n[properties]\n\"keepAlive.scheduledRate\" = 0\n", minimal());
        let config: ServiceConfig = toml::from_str(&text).unwrap();
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, "keepAlive.scheduledRate");
        assert!(error.problem.contains("from 1 to"), "{error}");
    }
}
