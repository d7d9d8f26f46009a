//! Tokens at rest: AES-256-GCM (ring) with a random nonce per value and the host name as associated data,
//! under a key kept in its own owner-only file, apart from the database. And the token's fingerprint, the
//! only thing about a token the service ever shows.

use std::path::Path;

use anyhow::Context as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Encrypts and decrypts tokens.
pub struct TokenCipher {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(***)")
    }
}

/// `n` random bytes from the system's secure generator.
pub fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(bytes)
}

/// A token's fingerprint: `sha256:` and the first 16 lower-case hexadecimal digits (64 bits) of the SHA-256
/// of its UTF-8 bytes. The endpoint computes the same from the hash it stores, so an administrator can
/// compare the two without anyone showing the token. 64 bits tell tokens apart; they reveal nothing usable
/// of a token with the endpoint's 256 random bits.
pub fn token_fingerprint(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    format!("sha256:{}", hex::encode(&digest.as_ref()[..8]))
}

impl TokenCipher {
    /// Loads the key from `path`, creating a fresh random key (0600) on first use.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let key = crate::files::read_or_create_private(path, || random_bytes(32))?;
        Self::from_key(&key).with_context(|| format!("{} does not hold a 32-byte key", path.display()))
    }

    /// A cipher with the given 32-byte key.
    pub fn from_key(key: &[u8]) -> anyhow::Result<Self> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| anyhow::anyhow!("invalid key length"))?;
        Ok(Self { key: LessSafeKey::new(unbound), random: SystemRandom::new() })
    }

    /// `nonce || ciphertext || tag`, bound to `context` (the host name).
    pub fn seal(&self, plaintext: &str, context: &str) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let mut buffer = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| anyhow::anyhow!("token encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(out)
    }

    /// Reverses [`seal`](Self::seal); fails if the value was altered, moved to another host, or sealed
    /// under another key.
    pub fn open_sealed(&self, sealed: &[u8], context: &str) -> anyhow::Result<String> {
        if sealed.len() < NONCE_LEN {
            anyhow::bail!("stored token is truncated");
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| anyhow::anyhow!("stored token cannot be decrypted (wrong token.key?)"))?;
        String::from_utf8(plain.to_vec()).context("stored token is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_fingerprint_is_the_documented_prefix_of_sha256() {
        // SHA-256("qwerrtrtrtrt2234344===") = 424e49d15987c197 8b72f3cb...; the endpoint's test uses the
        // same vector, so both sides show the same fingerprint for the same token.
        assert_eq!(token_fingerprint("qwerrtrtrtrt2234344==="), "sha256:424e49d15987c197");
        assert_ne!(token_fingerprint("qwerrtrtrtrt2234344=="), "sha256:424e49d15987c197");
    }

    #[test]
    fn round_trip_and_binding() {
        let cipher = TokenCipher::from_key(&[7u8; 32]).unwrap();
        let sealed = cipher.seal("qwerrtrtrtrt2234344===", "ep1").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"qwerr"));
        assert_eq!(cipher.open_sealed(&sealed, "ep1").unwrap(), "qwerrtrtrtrt2234344===");
        assert!(cipher.open_sealed(&sealed, "ep2").is_err());
        let other = TokenCipher::from_key(&[8u8; 32]).unwrap();
        assert!(other.open_sealed(&sealed, "ep1").is_err());
        assert_ne!(cipher.seal("x", "h").unwrap(), cipher.seal("x", "h").unwrap());
    }
}
