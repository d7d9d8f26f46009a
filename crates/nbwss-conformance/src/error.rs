//! Why a run could not start at all (as opposed to a rule that failed, which is a row of the report).

/// The kit could not run: an unusable option, a file it cannot read, an address it cannot bind, or an
/// endpoint certificate nobody said to trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SetupError {
    message: String,
    /// When the endpoint's certificate is not trusted yet: its SHA-256 fingerprint, to pass as
    /// `--fingerprint` after checking it.
    pub presented_sha256: Option<String>,
}

impl From<String> for SetupError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl SetupError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), presented_sha256: None }
    }

    pub(crate) fn untrusted(url: &str, sha256: String) -> Self {
        Self {
            message: format!(
                "{url} presented a certificate with SHA-256 fingerprint {sha256}; check it with the endpoint's \
                 operator, then pass --fingerprint {sha256} (or --ca-file with the CA that signed it)"
            ),
            presented_sha256: Some(sha256),
        }
    }
}
