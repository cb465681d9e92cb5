//! Runnel's MQTT bridge: MQTT messages become records of Kafka topics (at-least-once), and
//! records of topics can be published back to MQTT (egress).
//!
//! [`start`] runs every configured bridge against one [`Backend`] — the Kafka protocol for the
//! standalone `runnel-bridge` ([`kafka::KafkaBackend`]), or the broker's own log when embedded
//! in `runnel`. Per bridge there is one MQTT connection ([`mqtt`]) driven by one task, which
//! hands received messages through a bounded channel to the ingest task ([`ingest`]); egress
//! rules ([`egress`]) and the status publisher ([`status`]) run beside them.
//!
//! Layout: `config` (TOML, defaults, validation), `filter` and `mapping` (pure: MQTT topic
//! filters, message → record), `mqtt` and `tls` (the rumqttc link), `backend` and `kafka`
//! (where records go), `ingest`, `egress`, `status`.

pub mod backend;
pub mod config;
pub mod egress;
pub mod error;
pub mod filter;
pub mod ingest;
pub mod kafka;
pub mod mapping;
pub mod metrics;
pub mod mqtt;
pub mod service;
pub mod status;
mod tls;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use backend::Backend;
pub use config::BridgeConfig;
pub use error::{BridgeError, SinkError};
pub use status::{BridgeStats, StatusSnapshot};

use crate::egress::{Egress, PubAcks};
use crate::ingest::Ingest;
use crate::mapping::{Record, Router};
use crate::mqtt::{MqttDriver, MqttEvent, MqttHandle};

/// How long a stopping bridge waits for the write in progress before disconnecting.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The bridges started by [`start`].
#[derive(Debug)]
pub struct Running {
    stats: Vec<Arc<BridgeStats>>,
    tasks: JoinSet<()>,
}

impl Running {
    /// The state of every bridge now.
    pub fn snapshots(&self) -> Vec<StatusSnapshot> {
        self.stats.iter().map(|s| s.snapshot()).collect()
    }

    /// Live counters, for metrics endpoints.
    pub fn stats(&self) -> Vec<Arc<BridgeStats>> {
        self.stats.clone()
    }

    /// Waits until every bridge stopped (after the shutdown token was cancelled).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Validates `configs`, checks that every topic they name exists in `backend` (waiting for
/// the backend while it is unreachable), then starts the bridges.
pub async fn start(
    configs: Vec<BridgeConfig>,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
) -> Result<Running, BridgeError> {
    config::validate_all(&configs)?;
    let mut prepared = Vec::with_capacity(configs.len());
    for config in configs {
        let router = Router::new(&config.ingress)?;
        check_topics(&config, backend.as_ref(), &shutdown).await?;
        let (handle, driver) = mqtt::connect(&config)?;
        prepared.push((config, router, handle, driver));
    }
    let mut running = Running {
        stats: Vec::new(),
        tasks: JoinSet::new(),
    };
    for (config, router, handle, driver) in prepared {
        let stats = Arc::new(BridgeStats::new(&config));
        running.stats.push(stats.clone());
        tracing::info!(
            bridge = %config.name,
            mqtt = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
            ingress = config.ingress.len(),
            egress = config.egress.len(),
            "bridge starting"
        );
        running.tasks.spawn(run_bridge(
            config,
            router,
            handle,
            driver,
            backend.clone(),
            stats,
            shutdown.clone(),
        ));
    }
    Ok(running)
}

/// Every topic a bridge writes or reads must exist; an unreachable backend is waited for.
async fn check_topics(
    config: &BridgeConfig,
    backend: &dyn Backend,
    shutdown: &CancellationToken,
) -> Result<(), BridgeError> {
    let mut topics: Vec<(String, &str)> = Vec::new();
    for (i, r) in config.ingress.iter().enumerate() {
        topics.push((
            format!("ingress rule {} (filter {:?}) topic", i + 1, r.filter),
            &r.topic,
        ));
        if let Some(d) = &r.dead_letter_topic {
            topics.push((
                format!(
                    "ingress rule {} (filter {:?}) dead_letter_topic",
                    i + 1,
                    r.filter
                ),
                d,
            ));
        }
    }
    for (i, r) in config.egress.iter().enumerate() {
        topics.push((format!("egress rule {} topic", i + 1), &r.topic));
    }
    let mut backoff = mqtt::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    for (what, topic) in topics {
        loop {
            match backend.partitions(topic).await {
                Ok(_) => break,
                Err(e) if !e.rejected => {
                    tracing::warn!(bridge = %config.name, %topic, error = %e, "waiting for the backend");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(BridgeError::Startup {
                            bridge: config.name.clone(),
                            message: "stopped while waiting for the backend".into(),
                        }),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
                Err(e) => {
                    return Err(BridgeError::Startup {
                        bridge: config.name.clone(),
                        message: format!("{what} {topic:?}: {e}"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// One bridge: the MQTT driver loop here, ingest, egress and status as tasks.
async fn run_bridge(
    config: BridgeConfig,
    router: Router,
    handle: MqttHandle,
    mut driver: MqttDriver,
    backend: Arc<dyn Backend>,
    stats: Arc<BridgeStats>,
    shutdown: CancellationToken,
) {
    let subscriptions = router.subscriptions();
    let (tx, rx) = mpsc::channel(config.mqtt.ingest_buffer.max(1));
    let ingest = Ingest::new(
        router,
        config.ingress.clone(),
        backend.clone(),
        handle.clone(),
        stats.clone(),
        shutdown.clone(),
    );
    let mut ingest_task = tokio::spawn(ingest.run(rx));
    let acks = Arc::new(PubAcks::default());
    let mut helpers = JoinSet::new();
    for (index, rule) in config.egress.iter().enumerate() {
        helpers.spawn(
            Egress {
                group: rule.group_id(&config.name),
                rule: rule.clone(),
                index,
                backend: backend.clone(),
                handle: handle.clone(),
                acks: acks.clone(),
                stats: stats.clone(),
                shutdown: shutdown.clone(),
            }
            .run(),
        );
    }
    helpers.spawn(publish_status(
        backend.clone(),
        stats.clone(),
        Duration::from_millis(config.status_interval_ms.max(100)),
        shutdown.clone(),
    ));
    let mut subscribed = false;
    let mut failed_attempts: u64 = 0;
    let mut stop_at: Option<tokio::time::Instant> = None;
    loop {
        let deadline =
            stop_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled(), if stop_at.is_none() => {
                stop_at = Some(tokio::time::Instant::now() + STOP_TIMEOUT);
            }
            _ = &mut ingest_task => break,
            _ = tokio::time::sleep_until(deadline), if stop_at.is_some() => break,
            event = driver.next() => match event {
                MqttEvent::Connected { session_present } => {
                    failed_attempts = 0;
                    stats.connected.store(true, Ordering::Relaxed);
                    stats.connected_since_ms.store(mqtt::now_ms(), Ordering::Relaxed);
                    tracing::info!(bridge = %config.name, session_present, "connected to MQTT");
                    // A persistent session keeps its subscriptions; subscribe again only
                    // when it was lost, and once per start (the rules may have changed).
                    // Re-subscribing makes the broker re-send retained messages.
                    if !session_present || !subscribed {
                        for (filter, qos) in &subscriptions {
                            if let Err(e) = handle.subscribe(filter.clone(), *qos).await {
                                stats.set_error(format!("subscribing to {filter}: {e}"));
                            }
                        }
                        subscribed = true;
                    }
                }
                MqttEvent::Message(m) => {
                    // Waiting here stops reading (backpressure); it ends when ingest takes
                    // the message, when ingest is gone, or when the stop deadline passes.
                    stats.pending.fetch_add(1, Ordering::Relaxed);
                    let delivered = tokio::select! {
                        sent = tx.send(*m) => sent.is_ok(),
                        _ = shutdown.cancelled(), if stop_at.is_none() => {
                            stop_at = Some(tokio::time::Instant::now() + STOP_TIMEOUT);
                            false
                        }
                        _ = tokio::time::sleep_until(deadline), if stop_at.is_some() => false,
                    };
                    if !delivered {
                        stats.pending.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                MqttEvent::PubAck => acks.acked(),
                MqttEvent::Disconnected(e) => {
                    if stats.connected.swap(false, Ordering::Relaxed) {
                        stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        failed_attempts = 0;
                        tracing::warn!(bridge = %config.name, error = %e, "MQTT connection lost; reconnecting");
                    } else {
                        // Warn on the 1st, 2nd, 4th, 8th… failure in a row: visible at the
                        // default level without flooding the log while the broker is away.
                        failed_attempts += 1;
                        if failed_attempts.is_power_of_two() {
                            tracing::warn!(bridge = %config.name, error = %e, attempts = failed_attempts, "cannot connect to MQTT; retrying with backoff");
                        } else {
                            tracing::debug!(bridge = %config.name, error = %e, "MQTT connection attempt failed");
                        }
                    }
                    stats.set_error(format!("MQTT {}:{}: {e}", config.mqtt.host, config.mqtt.port));
                }
                MqttEvent::Other => {}
            },
        }
    }
    helpers.abort_all();
    // Flush the acks of the last batch, then say goodbye; unacked messages stay queued in
    // the persistent session.
    handle.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let MqttEvent::Disconnected(_) = driver.next().await {
                break;
            }
        }
    })
    .await;
    stats.connected.store(false, Ordering::Relaxed);
    tracing::info!(bridge = %config.name, "bridge stopped");
}

/// Writes the bridge's status as a JSON record keyed by its name every `interval`.
async fn publish_status(
    backend: Arc<dyn Backend>,
    stats: Arc<BridgeStats>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut topic_ready = false;
    let mut warned = false;
    let topic: Arc<str> = Arc::from(status::STATUS_TOPIC);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if !topic_ready {
            match backend.ensure_topic(status::STATUS_TOPIC).await {
                Ok(()) => topic_ready = true,
                Err(e) => {
                    if !warned {
                        tracing::warn!(topic = status::STATUS_TOPIC, error = %e, "cannot create the status topic; status is only in metrics");
                        warned = true;
                    }
                    continue;
                }
            }
        }
        let snapshot = stats.snapshot();
        let Ok(value) = serde_json::to_vec(&snapshot) else {
            continue;
        };
        let record = Record {
            topic: topic.clone(),
            key: Some(bytes::Bytes::from(snapshot.bridge.clone())),
            value: bytes::Bytes::from(value),
            timestamp_ms: snapshot.at_ms,
            headers: Vec::new(),
        };
        let batch = backend::TopicBatch {
            topic: topic.clone(),
            partition: 0,
            records: vec![record],
        };
        if let Some(Err(e)) = backend.write(vec![batch]).await.into_iter().next() {
            tracing::debug!(error = %e, "status record not written");
        }
    }
}
