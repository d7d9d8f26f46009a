//! TLS: certificate parsing and fingerprints, the capturing verifier of `validatehost`, the pinning verifier
//! of connections (D16), the primary server's trust, and the admin listener's self-signed certificate.
//! Every configuration uses rustls with the ring provider.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The ring provider, the only one this project uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in a PEM text; at least one is required.
pub fn parse_pem_certificates(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| anyhow::anyhow!("not a valid PEM certificate: {error}"))?;
    if certificates.is_empty() {
        anyhow::bail!("holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    Ok(certificates)
}

/// The PEM text of one DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// What an administrator is shown about an endpoint's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// SHA-1 fingerprint, upper-case colon hex.
    pub sha1: String,
    /// SHA-256 fingerprint, upper-case colon hex.
    pub sha256: String,
    /// The certificate, PEM.
    pub pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl CertificateInfo {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> anyhow::Result<Self> {
        let (_, parsed) = x509_parser::parse_x509_certificate(der)
            .map_err(|error| anyhow::anyhow!("bad certificate: {error}"))?;
        Ok(Self {
            subject: parsed.subject().to_string(),
            sha1: fingerprint(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der),
            sha256: fingerprint(&ring::digest::SHA256, der),
            pem: der_to_pem(der),
            der: der.to_vec(),
        })
    }

    /// Reads the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let certificates = parse_pem_certificates(pem)?;
        Self::from_der(certificates[0].as_ref())
    }
}

/// SHA-256 fingerprint of DER bytes, upper-case colon hex.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    fingerprint(&ring::digest::SHA256, der)
}

fn fingerprint(algorithm: &'static ring::digest::Algorithm, der: &[u8]) -> String {
    let digest = ring::digest::digest(algorithm, der);
    digest.as_ref().iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
}

/// Normalises a fingerprint for comparison: hex digits only, upper case.
pub fn normalise_fingerprint(text: &str) -> String {
    text.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_uppercase()).collect()
}

/// Accepts only a server whose leaf certificate is byte-for-byte the pinned one (or, without a pin,
/// any certificate, capturing it). Handshake signatures are still verified with ring's algorithms, so the
/// peer must hold the certificate's private key.
#[derive(Debug)]
pub struct PinnedVerifier {
    pinned: Option<Vec<u8>>,
    seen: Mutex<Option<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// Accepts exactly `der`.
    pub fn pinned(der: Vec<u8>) -> Arc<Self> {
        Arc::new(Self { pinned: Some(der), seen: Mutex::new(None), provider: provider() })
    }

    /// Accepts any certificate and remembers it (`validatehost`).
    pub fn capturing() -> Arc<Self> {
        Arc::new(Self { pinned: None, seen: Mutex::new(None), provider: provider() })
    }

    /// The leaf certificate the server presented, if the handshake got that far.
    pub fn seen(&self) -> Option<Vec<u8>> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A client configuration using this verifier.
    pub fn client_config(self: &Arc<Self>) -> anyhow::Result<rustls::ClientConfig> {
        Ok(rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS configuration failed")?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(end_entity.to_vec());
        match &self.pinned {
            Some(pinned) if pinned.as_slice() != end_entity.as_ref() => Err(
                rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure),
            ),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The server name to present for a host (an IP address or a DNS name).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| anyhow::anyhow!("'{host}' is not a valid host name"))
}

/// The admin listener's certificate and key: loaded from the data directory, or generated (self-signed,
/// for `localhost`, `127.0.0.1`, `::1` and the bind address) on first start.
pub fn admin_identity(data_dir: &Path, bind_ip: std::net::IpAddr) -> anyhow::Result<(String, String)> {
    let cert_path = data_dir.join(crate::files::ADMIN_CERT_FILE);
    let key_path = data_dir.join(crate::files::ADMIN_CERT_KEY_FILE);
    if let (Ok(cert), Ok(key)) = (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
        crate::files::restrict(&key_path)?;
        return Ok((cert, key));
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !bind_ip.is_unspecified() && !bind_ip.is_loopback() {
        names.push(bind_ip.to_string());
    }
    let generated =
        rcgen::generate_simple_self_signed(names).context("cannot generate the admin certificate")?;
    let cert = generated.cert.pem();
    let key = generated.signing_key.serialize_pem();
    crate::files::write_private(&key_path, key.as_bytes())?;
    crate::files::write_public(&cert_path, cert.as_bytes())?;
    Ok((cert, key))
}

/// A server configuration for a PEM certificate chain and key.
pub fn server_config(cert_pem: &str, key_pem: &str) -> anyhow::Result<rustls::ServerConfig> {
    let chain = parse_pem_certificates(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("not a valid PEM private key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS configuration failed")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate does not match its key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_and_pem_round_trip() {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let info = CertificateInfo::from_pem(&generated.cert.pem()).unwrap();
        assert_eq!(info.der, generated.cert.der().to_vec());
        assert_eq!(info.sha1.len(), 20 * 3 - 1);
        assert_eq!(info.sha256.len(), 32 * 3 - 1);
        assert!(info.subject.contains("rcgen"), "{}", info.subject);
        assert_eq!(CertificateInfo::from_pem(&info.pem).unwrap(), info);
        assert_eq!(normalise_fingerprint(&info.sha256.to_lowercase()), info.sha256.replace(':', ""));
        assert!(parse_pem_certificates("nothing").is_err());
    }
}
