//! The Kafka sink: every click event also goes to a topic, for teams that run their
//! own analytics stack (the seed's Kafka → stream processing → ClickHouse pipeline;
//! `deploy/clickhouse/` has a schema that reads the topic).
//!
//! Messages are the event's JSON (the same fields as the spool and the raw table),
//! keyed by short code, so all clicks of a link stay in one partition, in order.
//! Delivery is at-least-once: a batch counts as written once every partition acked it
//! (acks from all in-sync replicas); otherwise the whole batch is spooled and resent,
//! so a consumer may see a few events twice after a broker failure, never none.
//!
//! `rskafka` is a pure-Rust client: no librdkafka C build, and it is only a producer
//! here. The topic is created (with `KURZ_KAFKA_PARTITIONS` partitions and
//! `KURZ_KAFKA_REPLICATION_FACTOR` copies, by default the brokers' own default) if
//! missing.

use std::hash::Hasher;
use std::time::Duration;

use async_trait::async_trait;
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use tokio::sync::Mutex;

use super::event::ClickEvent;
use super::sink::{EventSink, SinkError};

pub struct KafkaSink {
    brokers: Vec<String>,
    topic: String,
    partitions: i32,
    replication_factor: i16,
    /// The connection, made on first use and dropped after any error so the next
    /// batch reconnects (a restarted broker forgets our sessions).
    conn: Mutex<Option<Connection>>,
}

struct Connection {
    _client: Client,
    partitions: Vec<PartitionClient>,
}

/// Why a Kafka write failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rskafka::client::error::Error),
    #[error("kafka: cannot encode an event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<KafkaError> for SinkError {
    fn from(e: KafkaError) -> Self {
        SinkError::new(e)
    }
}

/// The partition of a key: stable across restarts and instances.
pub fn partition_of(key: &str, partitions: usize) -> usize {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    h.write(key.as_bytes());
    (h.finish() % partitions.max(1) as u64) as usize
}

impl KafkaSink {
    pub fn new(brokers: Vec<String>, topic: String, partitions: i32, replication_factor: i16) -> Self {
        Self {
            brokers,
            topic,
            partitions: partitions.max(1),
            replication_factor,
            conn: Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Connection, KafkaError> {
        // Give up quickly: the batcher spools and retries on its own schedule.
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            deadline: Some(Duration::from_secs(3)),
        };
        let client = ClientBuilder::new(self.brokers.clone())
            .client_id("kurz")
            .backoff_config(backoff)
            .build()
            .await?;
        let topics = client.list_topics().await?;
        let count = match topics.iter().find(|t| t.name == self.topic) {
            Some(t) => t.partitions.len() as i32,
            None => {
                client
                    .controller_client()?
                    .create_topic(
                        self.topic.clone(),
                        self.partitions,
                        self.replication_factor,
                        5_000,
                    )
                    .await?;
                tracing::info!(
                    topic = %self.topic,
                    partitions = self.partitions,
                    replication_factor = self.replication_factor,
                    "created the Kafka topic"
                );
                self.partitions
            }
        };
        let mut partitions = Vec::with_capacity(count.max(1) as usize);
        for p in 0..count.max(1) {
            partitions.push(
                client
                    .partition_client(self.topic.clone(), p, UnknownTopicHandling::Retry)
                    .await?,
            );
        }
        Ok(Connection {
            _client: client,
            partitions,
        })
    }
}

#[async_trait]
impl EventSink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn write(&self, events: &[&ClickEvent]) -> Result<(), SinkError> {
        let mut guard = self.conn.lock().await;
        // Taken out while in use; put back only after a write that succeeded.
        let conn = match guard.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let mut per_partition: Vec<Vec<Record>> = vec![Vec::new(); conn.partitions.len()];
        for e in events {
            let value = serde_json::to_vec(e).map_err(KafkaError::from)?;
            per_partition[partition_of(&e.short_code, conn.partitions.len())].push(Record {
                key: Some(e.short_code.as_bytes().to_vec()),
                value: Some(value),
                headers: Default::default(),
                timestamp: e.clicked_at,
            });
        }
        let sends = conn
            .partitions
            .iter()
            .zip(per_partition)
            .filter(|(_, records)| !records.is_empty())
            .map(|(p, records)| p.produce(records, Compression::NoCompression));
        let results = futures_util::future::join_all(sends).await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(KafkaError::from(e).into());
        }
        *guard = Some(conn);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_always_maps_to_one_partition_and_codes_spread() {
        assert_eq!(partition_of("abc1234", 6), partition_of("abc1234", 6));
        let used: std::collections::BTreeSet<usize> =
            (0..200).map(|i| partition_of(&format!("code{i}"), 6)).collect();
        assert_eq!(used.len(), 6);
        assert_eq!(partition_of("x", 0), 0);
    }
}
