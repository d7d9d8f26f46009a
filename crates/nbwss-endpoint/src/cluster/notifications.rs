//! NOTIFICATION records in the cluster's stream, and each replica's local copy of it.

use futures_util::StreamExt as _;
use nbwss_protocol::ReceivedRecord;
use tokio_util::sync::CancellationToken;

use super::watch::{follow_until_cancelled, Warning};
use super::Cluster;
use crate::store::{Store, StreamRecord};

/// Records copied into the local store per transaction at most.
const COPY_BATCH: usize = 500;

/// What publishing one NOTIFICATION REQUEST did.
pub(crate) struct Published {
    pub records: usize,
    pub nonconforming: usize,
    /// Every record was already in the stream (a resend within the duplicate window).
    pub duplicate: bool,
}

/// Publishes every record of one NOTIFICATION REQUEST and returns once the stream has acknowledged each:
/// only then may the service be acknowledged (D11, D12). `Nats-Msg-Id` is the primary server, the message
/// id and the record's index, so that a resend is stored once within the duplicate window.
pub(crate) async fn publish(
    cluster: &Cluster,
    primary: &str,
    message_id: &str,
    records: &[ReceivedRecord],
) -> anyhow::Result<Published> {
    let received_at = crate::store::now();
    let mut acks = Vec::with_capacity(records.len());
    let mut nonconforming = 0;
    for (index, record) in records.iter().enumerate() {
        let problems: Vec<String> = record.problems.iter().map(ToString::to_string).collect();
        nonconforming += usize::from(!problems.is_empty());
        let body = StreamRecord {
            primary: primary.to_owned(),
            message_id: message_id.to_owned(),
            notification_type: record.notification_type.clone(),
            object: record.object.clone(),
            record: record.record.clone(),
            received_at: received_at.clone(),
            problems,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{primary}/{message_id}/{index}").as_str());
        let ack = cluster
            .jetstream
            .publish_with_headers(
                cluster.notification_subject(primary, &record.object),
                headers,
                serde_json::to_vec(&body)?.into(),
            )
            .await?;
        acks.push(ack);
    }
    let mut duplicate = !records.is_empty();
    for ack in acks {
        duplicate &= ack.await?.duplicate;
    }
    Ok(Published { records: records.len(), nonconforming, duplicate })
}

/// Copies the stream into the local store, from the record after the last one copied, under the stream
/// sequence as cursor; moves `feed` (the newest cursor) as records arrive. Runs until `cancel`.
pub(crate) async fn copy_stream(
    cluster: Cluster,
    store: Store,
    feed: tokio::sync::watch::Sender<i64>,
    cancel: CancellationToken,
) {
    let (cluster, store, feed) = (&cluster, &store, &feed);
    let warning =
        Warning { what: "cluster notifications", ended: "consumer ended", again: "reading the stream again" };
    follow_until_cancelled(warning, cancel, move || async move {
        let last = store.run(|store| store.last_cursor()).await?;
        let start_sequence = u64::try_from(last).unwrap_or(0) + 1;
        let consumer = cluster
            .stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence,
                },
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?.ready_chunks(COPY_BATCH);
        while let Some(batch) = messages.next().await {
            let mut records = Vec::with_capacity(batch.len());
            for message in batch {
                let message = message?;
                let sequence = message.info().map_err(|error| anyhow::anyhow!("{error}"))?.stream_sequence;
                match serde_json::from_slice::<StreamRecord>(&message.payload) {
                    Ok(record) => records.push((i64::try_from(sequence)?, record)),
                    Err(error) => {
                        tracing::warn!(sequence, "stream record skipped (not an NBWSS record): {error}")
                    }
                }
            }
            if records.is_empty() {
                continue;
            }
            let last = store.run(move |store| store.copy_stream_records(&records)).await?;
            feed.send_modify(|cursor| *cursor = (*cursor).max(last));
        }
        anyhow::Ok(())
    })
    .await;
}
