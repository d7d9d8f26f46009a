//! The server certificate: loaded from PEM files, or self-signed for `localhost` and `127.0.0.1` on
//! start. Always served through rustls with the ring provider.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate the emulator presents, and what `/security/cacert` says about it.
#[derive(Debug, Clone)]
pub(crate) struct TlsMaterial {
    pub(crate) certificate_pem: String,
    certificate_der: Vec<u8>,
    key_pem: String,
    pub(crate) subject_cn: String,
    pub(crate) not_before: String,
    pub(crate) not_after: String,
}

impl TlsMaterial {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`.
    pub(crate) fn self_signed() -> anyhow::Result<Self> {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified =
            rcgen::generate_simple_self_signed(names).context("generating a self-signed certificate")?;
        Ok(Self {
            certificate_pem: certified.cert.pem(),
            certificate_der: certified.cert.der().to_vec(),
            key_pem: certified.signing_key.serialize_pem(),
            subject_cn: "localhost".to_owned(),
            // rcgen's default validity.
            not_before: "1975-01-01T00:00:00.000Z".to_owned(),
            not_after: "4096-01-01T00:00:00.000Z".to_owned(),
        })
    }

    /// A certificate and key from PEM files.
    pub(crate) fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let certificate_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("reading the certificate {}", cert.display()))?;
        let key_pem =
            std::fs::read_to_string(key).with_context(|| format!("reading the key {}", key.display()))?;
        let first = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .next()
            .context("the certificate file holds no certificate")?
            .context("reading the certificate PEM")?;
        Ok(Self {
            certificate_der: first.to_vec(),
            certificate_pem,
            key_pem,
            subject_cn: String::new(),
            not_before: String::new(),
            not_after: String::new(),
        })
    }

    /// The rustls server configuration (ring provider, HTTP/1.1 and HTTP/2).
    pub(crate) fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let chain = CertificateDer::pem_slice_iter(self.certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading the certificate chain")?;
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).context("reading the private key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the certificate and key do not make a valid TLS configuration")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Colon-separated upper-case hex SHA-1 and SHA-256 fingerprints of the certificate.
    /// A serial number for `/security/cacert`, which documents it as an integer: the first six bytes of
    /// the certificate's SHA-256, so that it stays within every client's integer range.
    pub(crate) fn serial_number(&self) -> u64 {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.certificate_der);
        digest.as_ref().iter().take(6).fold(0u64, |value, byte| value << 8 | u64::from(*byte))
    }

    pub(crate) fn fingerprints(&self) -> (String, String) {
        let hex = |digest: ring::digest::Digest| {
            digest.as_ref().iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
        };
        (
            hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.certificate_der)),
            hex(ring::digest::digest(&ring::digest::SHA256, &self.certificate_der)),
        )
    }
}
