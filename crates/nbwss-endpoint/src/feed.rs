//! The notification feed: a page of stored records after a cursor, and a server-sent-events stream that
//! resumes from `Last-Event-ID` (event id = cursor) and then follows new records as they are committed,
//! until the endpoint stops or the stream's API key is revoked (then a last `error` event says why).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::AuthenticatedKey;
use crate::error::{ApiError, Query};
use crate::state::AppState;
use crate::store::{FeedQuery, StoredNotification};

/// Default page size.
const DEFAULT_LIMIT: usize = 100;
/// Largest page.
const MAX_LIMIT: usize = 1000;
/// Records read from the store at a time by a stream.
const STREAM_BATCH: usize = 500;

#[derive(Debug, Deserialize)]
pub(crate) struct FeedParams {
    after: Option<i64>,
    limit: Option<usize>,
    primary: Option<String>,
    object: Option<String>,
}

impl FeedParams {
    fn query(&self, after: i64, limit: usize) -> Result<FeedQuery, ApiError> {
        if after < 0 {
            return Err(ApiError::bad_request("after: must be a cursor (0 or more)"));
        }
        let object = match self.object.as_deref().map(str::to_ascii_uppercase) {
            None => None,
            Some(object) if object == "JOB" || object == "IMAGE" => Some(object),
            Some(other) => {
                return Err(ApiError::bad_request(format!("object: '{other}' is not JOB or IMAGE")))
            }
        };
        Ok(FeedQuery { after, limit, primary: self.primary.clone().filter(|p| !p.is_empty()), object })
    }
}

/// `GET /api/v1/notifications?after=CURSOR&limit=N[&primary=NAME&object=JOB|IMAGE]`.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(params): Query<FeedParams>,
) -> Result<Json<Value>, ApiError> {
    let after = params.after.unwrap_or(0);
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!("limit: at most {MAX_LIMIT}")));
    }
    let query = params.query(after, limit)?;
    let (notifications, last_cursor) =
        state.store.run(move |store| Ok((store.notifications(&query)?, store.last_cursor()?))).await?;
    let next_cursor = notifications.last().map_or(after, |last| last.cursor);
    Ok(Json(json!({
        "notifications": notifications,
        "nextCursor": next_cursor,
        "lastCursor": last_cursor,
    })))
}

/// `GET /api/v1/notifications/stream[?after=CURSOR&primary=&object=]`, resuming after `Last-Event-ID`
/// when the client sends one.
pub(crate) async fn stream(
    State(state): State<AppState>,
    Extension(key): Extension<AuthenticatedKey>,
    Query(params): Query<FeedParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID: must be a cursor"))?,
        ),
    };
    let after = last_event_id.or(params.after).unwrap_or(0);
    let query = params.query(after, STREAM_BATCH)?;
    let follower = Follower {
        state: state.clone(),
        query,
        buffer: VecDeque::new(),
        changes: state.feed.subscribe(),
        credentials: state.credentials.subscribe(),
        key,
        cancel: state.cancel.clone(),
        ended: false,
    };
    let events = futures_util::stream::unfold(follower, |mut follower| async move {
        if follower.ended {
            return None;
        }
        let event = match follower.next().await {
            Next::Record(record) => event(&record),
            Next::Revoked => {
                follower.ended = true;
                revoked_event()
            }
            Next::End => return None,
        };
        Some((Ok(event), follower))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

struct Follower {
    state: AppState,
    query: FeedQuery,
    buffer: VecDeque<StoredNotification>,
    changes: watch::Receiver<i64>,
    credentials: watch::Receiver<u64>,
    key: AuthenticatedKey,
    cancel: CancellationToken,
    ended: bool,
}

enum Next {
    Record(Box<StoredNotification>),
    /// The stream's API key was revoked.
    Revoked,
    /// Shutdown or a store failure.
    End,
}

impl Follower {
    /// The next record, waiting for one when none is stored yet.
    async fn next(&mut self) -> Next {
        loop {
            if let Some(next) = self.buffer.pop_front() {
                self.query.after = next.cursor;
                return Next::Record(Box::new(next));
            }
            // Mark the current cursor seen before reading, so a commit after the read wakes us.
            self.changes.borrow_and_update();
            let query = self.query.clone();
            match self.state.store.run(move |store| store.notifications(&query)).await {
                Ok(rows) if !rows.is_empty() => {
                    self.buffer.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!("notification stream ends: {error:#}");
                    return Next::End;
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return Next::End,
                changed = self.changes.changed() => if changed.is_err() { return Next::End },
                changed = self.credentials.changed() => {
                    if changed.is_err() {
                        return Next::End;
                    }
                    if !self.key_is_valid().await {
                        return Next::Revoked;
                    }
                }
            }
        }
    }

    async fn key_is_valid(&self) -> bool {
        let key_sha256 = self.key.key_sha256.clone();
        match self.state.store.run(move |store| store.check_api_key_hash(&key_sha256)).await {
            Ok(name) => name.is_some(),
            Err(error) => {
                tracing::error!("cannot check a stream's API key: {error:#}");
                true
            }
        }
    }
}

/// The last event of a stream whose API key was revoked: the app API's error body.
fn revoked_event() -> Event {
    let body =
        json!({ "error": { "code": "unauthorized", "message": "the API key of this stream was revoked" } });
    Event::default().event("error").data(body.to_string())
}

fn event(notification: &StoredNotification) -> Event {
    let data = serde_json::to_string(notification).unwrap_or_default();
    Event::default().id(notification.cursor.to_string()).event("notification").data(data)
}
