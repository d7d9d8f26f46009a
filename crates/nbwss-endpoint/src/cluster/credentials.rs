//! Tokens and API keys in the cluster's key-value buckets (hashes only), and each replica's local copy.

use futures_util::StreamExt as _;
use nbwss_protocol::{EndpointDetails, Secret};

use super::watch::{follow_until_cancelled, Warning};
use super::{token, Cluster};
use crate::store::{
    check_name, check_token_fields, host_of, new_secret, now, sha256_hex, ApiKeyInfo, ClusterApiKey,
    ClusterToken, Store, TokenInfo,
};

/// Token and API-key management against a cluster (what `nbwss endpoint token|apikey --cluster` uses).
pub struct ClusterCredentials<'a>(pub &'a Cluster);

impl ClusterCredentials<'_> {
    /// Creates (or rotates) the token of primary server `name`; the token is shown only in the returned
    /// details. Every replica's session opened with the previous token is closed within moments.
    pub async fn create_token(
        &self,
        name: &str,
        group_id: &str,
        priority: i64,
        websocket_url: &str,
    ) -> anyhow::Result<EndpointDetails> {
        check_token_fields(name, group_id, priority)?;
        let host_name = host_of(websocket_url)?;
        let secret = new_secret();
        let entry = ClusterToken {
            name: name.to_owned(),
            group_id: group_id.to_owned(),
            priority,
            token_sha256: sha256_hex(&secret),
            created_at: now(),
        };
        self.0.tokens.put(token(name), serde_json::to_vec(&entry)?.into()).await?;
        Ok(EndpointDetails {
            host_name,
            url: websocket_url.to_owned(),
            group_id: group_id.to_owned(),
            priority,
            token: Secret::new(secret),
        })
    }

    /// Revokes the token of `name`; false when there was none.
    pub async fn revoke_token(&self, name: &str) -> anyhow::Result<bool> {
        if self.0.tokens.get(token(name)).await?.is_none() {
            return Ok(false);
        }
        self.0.tokens.delete(token(name)).await?;
        Ok(true)
    }

    /// The registered primary servers.
    pub async fn list_tokens(&self) -> anyhow::Result<Vec<TokenInfo>> {
        let mut tokens: Vec<TokenInfo> = all::<ClusterToken>(&self.0.tokens)
            .await?
            .into_iter()
            .map(|entry| TokenInfo {
                token_fingerprint: format!(
                    "sha256:{}",
                    &entry.token_sha256[..entry.token_sha256.len().min(16)]
                ),
                name: entry.name,
                group_id: entry.group_id,
                priority: entry.priority,
                created_at: entry.created_at,
            })
            .collect();
        tokens.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tokens)
    }

    /// Creates (or replaces) API key `name`; the key is shown only here.
    pub async fn create_api_key(&self, name: &str) -> anyhow::Result<String> {
        check_name(name, "name")?;
        let key = new_secret();
        let entry = ClusterApiKey { name: name.to_owned(), key_sha256: sha256_hex(&key), created_at: now() };
        self.0.api_keys.put(token(name), serde_json::to_vec(&entry)?.into()).await?;
        Ok(key)
    }

    /// Revokes API key `name`; false when there was none.
    pub async fn revoke_api_key(&self, name: &str) -> anyhow::Result<bool> {
        if self.0.api_keys.get(token(name)).await?.is_none() {
            return Ok(false);
        }
        self.0.api_keys.delete(token(name)).await?;
        Ok(true)
    }

    /// The API keys.
    pub async fn list_api_keys(&self) -> anyhow::Result<Vec<ApiKeyInfo>> {
        let mut keys: Vec<ApiKeyInfo> = all::<ClusterApiKey>(&self.0.api_keys)
            .await?
            .into_iter()
            .map(|entry| ApiKeyInfo { name: entry.name, created_at: entry.created_at })
            .collect();
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }
}

/// Every value of a bucket.
async fn all<T: serde::de::DeserializeOwned>(
    bucket: &async_nats::jetstream::kv::Store,
) -> anyhow::Result<Vec<T>> {
    let mut values = Vec::new();
    let mut keys = bucket.keys().await?;
    while let Some(key) = keys.next().await {
        if let Some(value) = bucket.get(key?).await? {
            values.push(serde_json::from_slice(&value)?);
        }
    }
    Ok(values)
}

/// Makes the local store's tokens and API keys those of the buckets; returns the buckets' revisions to
/// watch from.
pub(crate) async fn load(cluster: &Cluster, store: &Store) -> anyhow::Result<(u64, u64)> {
    let tokens_from = cluster.tokens.status().await?.info.state.last_sequence + 1;
    let api_keys_from = cluster.api_keys.status().await?.info.state.last_sequence + 1;
    let tokens = all::<ClusterToken>(&cluster.tokens).await?;
    let api_keys = all::<ClusterApiKey>(&cluster.api_keys).await?;
    store.run(move |store| store.replace_credentials(&tokens, &api_keys)).await?;
    Ok((tokens_from, api_keys_from))
}

/// Keeps the local copy of the buckets current until `cancel`; the revocation watcher then closes the
/// sessions whose token is gone, and SSE streams whose key is gone end.
pub(crate) async fn follow(
    cluster: Cluster,
    store: Store,
    from: (u64, u64),
    cancel: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Where each watch resumes: after the last revision copied, across its restarts.
    let (tokens_from, api_keys_from) = (AtomicU64::new(from.0), AtomicU64::new(from.1));
    let (cluster, store, tokens_from, api_keys_from) = (&cluster, &store, &tokens_from, &api_keys_from);
    let warning = Warning { what: "cluster credentials", ended: "watch ended", again: "watching again" };
    follow_until_cancelled(warning, cancel, move || async move {
        let mut tokens = cluster.tokens.watch_all_from_revision(tokens_from.load(Ordering::Relaxed)).await?;
        let mut api_keys =
            cluster.api_keys.watch_all_from_revision(api_keys_from.load(Ordering::Relaxed)).await?;
        loop {
            tokio::select! {
                entry = tokens.next() => {
                    let Some(entry) = entry else { anyhow::bail!("token watch ended") };
                    let entry = entry?;
                    tokens_from.store(entry.revision + 1, Ordering::Relaxed);
                    let name = entry.key.replace('=', ".");
                    match entry.operation {
                        async_nats::jetstream::kv::Operation::Put => {
                            let token: ClusterToken = serde_json::from_slice(&entry.value)?;
                            store.run(move |store| store.put_cluster_token(&token)).await?;
                        }
                        _ => {
                            store.run(move |store| store.revoke_token(&name).map(drop)).await?;
                        }
                    }
                }
                entry = api_keys.next() => {
                    let Some(entry) = entry else { anyhow::bail!("API key watch ended") };
                    let entry = entry?;
                    api_keys_from.store(entry.revision + 1, Ordering::Relaxed);
                    let name = entry.key.replace('=', ".");
                    match entry.operation {
                        async_nats::jetstream::kv::Operation::Put => {
                            let key: ClusterApiKey = serde_json::from_slice(&entry.value)?;
                            store.run(move |store| store.put_cluster_api_key(&key)).await?;
                        }
                        _ => {
                            store.run(move |store| store.revoke_api_key(&name).map(drop)).await?;
                        }
                    }
                }
            }
        }
    })
    .await;
}
