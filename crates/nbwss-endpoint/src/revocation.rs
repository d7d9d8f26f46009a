//! Revocation takes effect at once: every `limits.revocation_check_interval_ms` the endpoint asks the store
//! whether tokens or API keys changed (here, or from `nbwss endpoint token revoke` in another process).
//! When they did, it closes each session whose token was revoked or rotated, and tells the SSE streams,
//! which end when their API key is gone.

use nbwss_protocol::CloseStatus;

use crate::state::AppState;

/// Watches for credential changes until the endpoint shuts down.
pub(crate) async fn watch(state: AppState) {
    let mut ticker = tokio::time::interval(state.config.revocation_check_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let version = match state.store.run(|store| store.credentials_version()).await {
            Ok(version) => version,
            Err(error) => {
                tracing::error!("cannot check for revoked tokens and API keys: {error:#}");
                continue;
            }
        };
        if seen.replace(version).is_none_or(|seen| seen == version) {
            continue;
        }
        close_revoked_sessions(&state).await;
        state.credentials.send_modify(|generation| *generation += 1);
    }
}

/// Closes the sessions whose token the store no longer holds for their primary server.
pub(crate) async fn close_revoked_sessions(state: &AppState) {
    let tokens = match state.store.run(|store| store.token_hashes()).await {
        Ok(tokens) => tokens,
        Err(error) => {
            tracing::error!("cannot read the tokens to close revoked sessions: {error:#}");
            return;
        }
    };
    for session in state.registry.all() {
        let reason = match tokens.get(&session.name) {
            Some(current) if *current == session.token_sha256 => continue,
            Some(_) => "token rotated",
            None => "token revoked",
        };
        tracing::warn!(primary = %session.name, remote = %session.remote, "closing the session: {reason}");
        session.close(CloseStatus::ViolatedPolicy, reason);
    }
}
