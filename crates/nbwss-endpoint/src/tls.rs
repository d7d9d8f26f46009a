//! The endpoint's TLS identity: certificate and key from files, or a self-signed pair for `localhost` and
//! `127.0.0.1` generated once and kept in the data directory.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::EndpointConfig;
use crate::files;

/// File names of the generated certificate and key inside the data directory.
pub const GENERATED_CERT_FILE: &str = "endpoint-cert.pem";
/// See [`GENERATED_CERT_FILE`].
pub const GENERATED_KEY_FILE: &str = "endpoint-key.pem";

/// The loaded identity.
pub(crate) struct Identity {
    pub certificate_pem: String,
    pub certificate_sha256: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

pub(crate) fn load(config: &EndpointConfig) -> anyhow::Result<Identity> {
    let (cert_path, key_path) = match &config.tls {
        Some(files) => (files.cert.clone(), files.key.clone()),
        None => {
            let cert = config.data_dir.join(GENERATED_CERT_FILE);
            let key = config.data_dir.join(GENERATED_KEY_FILE);
            if !cert.exists() || !key.exists() {
                generate(&cert, &key)?;
            }
            (cert, key)
        }
    };
    warn_if_readable_by_others(&key_path);
    let certificate_pem = std::fs::read_to_string(&cert_path)
        .map_err(|error| anyhow::anyhow!("cannot read certificate {}: {error}", cert_path.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|error| anyhow::anyhow!("{}: not a PEM certificate chain: {error}", cert_path.display()))?;
    let leaf = chain.first().ok_or_else(|| anyhow::anyhow!("{}: no certificate", cert_path.display()))?;
    let certificate_sha256 = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|error| anyhow::anyhow!("{}: not a PEM private key: {error}", key_path.display()))?;
    let mut server_config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    // HTTP/1.1 only: the listener serves it with its timeouts (see listener.rs).
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity { certificate_pem, certificate_sha256, server_config: Arc::new(server_config) })
}

fn generate(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    // The key first: a certificate without its key would be regenerated, a key without its certificate too.
    files::write_private_file(key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, generated.cert.pem())?;
    tracing::info!(certificate = %cert_path.display(), "generated a self-signed certificate for localhost");
    Ok(())
}

/// A private key others can read is not private: say so (the operator's file is theirs to change).
fn warn_if_readable_by_others(key_path: &Path) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(key_path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(key = %key_path.display(), "the TLS private key is readable by others (mode {mode:o}): chmod 600 it");
        }
    }
}

/// SHA-256 fingerprint of a DER certificate: upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
}
