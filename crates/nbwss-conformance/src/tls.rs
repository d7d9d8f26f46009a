//! TLS for the kit (rustls, ring provider): trusting an endpoint by SHA-256 fingerprint or by CA file, and
//! the kit's own server identity when it plays an endpoint.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::SetupError;

/// How the kit decides to trust a peer's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Exactly the certificate with this SHA-256 fingerprint (hex, any case, colons optional), as NetBackup
    /// pins the certificate the administrator accepted (D16).
    Fingerprint(String),
    /// Certificates chaining to one of these PEM certificates, for the URL's host name.
    CaPem(String),
    /// Nothing yet: the handshake is made to show the certificate, and refused.
    Unset,
}

impl Trust {
    /// Trust by the CA certificates in a PEM file.
    pub fn ca_file(path: &Path) -> Result<Self, SetupError> {
        let pem = std::fs::read_to_string(path)
            .map_err(|error| SetupError::new(format!("cannot read {}: {error}", path.display())))?;
        Ok(Self::CaPem(pem))
    }
}

/// The ring provider, the only one this project uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 fingerprint of a DER certificate: upper-case hex pairs joined by colons.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
}

/// Hex digits only, upper case: how fingerprints are compared.
fn normalise(fingerprint: &str) -> String {
    fingerprint.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_uppercase()).collect()
}

/// The leaf certificate a server presented, kept for messages.
#[derive(Debug, Default)]
pub(crate) struct Presented(Mutex<Option<Vec<u8>>>);

impl Presented {
    pub fn get(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, der: &[u8]) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(der.to_vec());
    }
}

/// Verifies by fingerprint (or captures and refuses when unset); handshake signatures are always verified.
#[derive(Debug)]
struct FingerprintVerifier {
    expected: Option<String>,
    presented: Arc<Presented>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.presented.set(end_entity.as_ref());
        let actual = normalise(&sha256_fingerprint(end_entity.as_ref()));
        match &self.expected {
            Some(expected) if *expected == actual => Ok(ServerCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
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

/// A client configuration for `trust`, and where the presented certificate will be recorded (only for
/// fingerprint and unset trust).
pub(crate) fn client_config(trust: &Trust) -> Result<(rustls::ClientConfig, Arc<Presented>), SetupError> {
    let presented = Arc::new(Presented::default());
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| SetupError::new(format!("TLS configuration failed: {error}")))?;
    let config = match trust {
        Trust::CaPem(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| SetupError::new(format!("--ca-file: not a PEM certificate: {error}")))?;
            if certificates.is_empty() {
                return Err(SetupError::new(
                    "--ca-file holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|error| SetupError::new(format!("--ca-file: unusable certificate: {error}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Fingerprint(_) | Trust::Unset => {
            let expected = match trust {
                Trust::Fingerprint(fingerprint) => {
                    let expected = normalise(fingerprint);
                    if expected.len() != 64 {
                        return Err(SetupError::new(format!(
                            "--fingerprint '{fingerprint}' is not a SHA-256 fingerprint (64 hex digits, colons optional)"
                        )));
                    }
                    Some(expected)
                }
                _ => None,
            };
            let verifier = Arc::new(FingerprintVerifier {
                expected,
                presented: presented.clone(),
                provider: provider(),
            });
            builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
        }
    };
    Ok((config, presented))
}

/// A TLS client configuration that trusts a server as the kit does (for tools and tests that play a peer
/// of the kit).
pub fn client_tls(trust: &Trust) -> Result<rustls::ClientConfig, SetupError> {
    client_config(trust).map(|(config, _)| config)
}

/// The server name to present for a host (an IP address or a DNS name).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, SetupError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|_| SetupError::new(format!("'{host}' is not a valid host name")))
}

/// The kit's certificate when it plays an endpoint.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The rustls server configuration.
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// The leaf certificate, PEM.
    pub certificate_pem: String,
    /// Its SHA-256 fingerprint, upper-case colon hex.
    pub certificate_sha256: String,
}

impl Identity {
    /// The rustls server configuration for this certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// A self-signed certificate for `names` (host names or IP addresses), generated now.
    pub fn generate(names: &[String]) -> Result<Self, SetupError> {
        let generated = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|error| SetupError::new(format!("cannot generate a certificate: {error}")))?;
        Self::from_pem(&generated.cert.pem(), &generated.signing_key.serialize_pem())
    }

    /// A certificate chain and key from PEM text.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, SetupError> {
        let chain = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| SetupError::new(format!("not a PEM certificate chain: {error}")))?;
        let leaf =
            chain.first().ok_or_else(|| SetupError::new("the certificate file holds no certificate"))?;
        let certificate_sha256 = sha256_fingerprint(leaf.as_ref());
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|error| SetupError::new(format!("not a PEM private key: {error}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| SetupError::new(format!("TLS configuration failed: {error}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| SetupError::new(format!("the certificate does not match its key: {error}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config), certificate_pem: certificate_pem.to_owned(), certificate_sha256 })
    }
}
