//! Reading an HTTP answer's body with a size cap: what a peer sends costs memory proportional to the cap,
//! never to what it chose to send.

/// Why a capped body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than the cap; reading stopped there.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads the whole body of `response`, refusing more than `limit` bytes.
pub async fn read_limited(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let announced = response.content_length();
    if announced.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    // Room for the announced length (at most the cap) at once, not grown chunk by chunk.
    let mut body = Vec::with_capacity(announced.map_or(0, |length| usize::try_from(length).unwrap_or(limit)));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads the body of `response` as UTF-8 text of at most `limit` bytes.
pub async fn read_text_limited(response: &mut reqwest::Response, limit: usize) -> Result<String, String> {
    let bytes = read_limited(response, limit).await.map_err(|error| error.to_string())?;
    String::from_utf8(bytes).map_err(|_| "the answer is not UTF-8 text".to_owned())
}
