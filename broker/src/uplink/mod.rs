//! Store-and-forward uplinks (`[[uplink]]` tables): local topics mirrored to an upstream
//! Kafka-compatible cluster whenever a link is up, oldest records first, exactly once.
//!
//! Each uplink has one upstream [`Client`] and a supervisor that starts a [`lane`] for every
//! local partition its topic selector matches (and stops lanes of deleted topics), rescanning
//! the topic list every second. Lanes read the local log, add `runnel.origin.*` headers and
//! produce idempotently with acks=all; their progress is durable in the store
//! ([`crate::log::UplinkStore`]) and holds retention back ([`holds`]) until records are
//! forwarded. A status publisher writes each uplink's [`UplinkSnapshot`] to [`STATUS_TOPIC`].
//!
//! Partition mapping: local partition `p` goes to upstream partition `p mod n` (n: the
//! upstream topic's partition count when first used, then fixed in the stored progress), so
//! per-partition order holds end to end.
//!
//! Uplinks are trusted internal components: they read the local log and write their status
//! topic through internal paths, not through the request handlers, and are not checked against
//! the local ACLs ([`crate::acl`]); upstream, they are whatever principal their `[uplink.sasl]`
//! or client certificate names.

pub mod config;
pub mod holds;
mod lane;
pub mod status;
mod throttle;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicI64};
use std::time::Duration;

use bytes::Bytes;
use runnel_bridge::backend::{Backend, TopicBatch};
use runnel_bridge::mapping::Record;
use runnel_client::{Client, ClientConfig, ClientError, Compression, NewTopic, ResponseError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{UplinkConfig, UplinkConfigError, validate_all};
pub use holds::Holds;
pub use lane::{HEADER_DEVICE, HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC};
pub use status::{STATUS_TOPIC, UplinkSnapshot, UplinkStats};

use crate::handlers::{Ctx, blocking};
use crate::log::{PartitionId, UplinkProgress, UplinkStore};
use config::{TopicSelector, Window};
use status::LaneStats;
use throttle::Throttle;

/// How often the supervisor looks for new and deleted topics.
const RESCAN: Duration = Duration::from_secs(1);

/// What the lanes of one uplink share.
pub(crate) struct Shared {
    ctx: Arc<Ctx>,
    store: Arc<dyn UplinkStore>,
    name: Arc<str>,
    config: UplinkConfig,
    device_header: Bytes,
    client: Client,
    compression: Compression,
    window: Option<Window>,
    throttle: Throttle,
    stats: Arc<UplinkStats>,
    /// Partition counts of upstream topics seen (or created) so far.
    remote: tokio::sync::Mutex<HashMap<String, i32>>,
}

impl Shared {
    /// The partition count of upstream topic `remote`, creating it when allowed.
    async fn remote_partitions(
        &self,
        remote: &str,
        local_partitions: i32,
    ) -> Result<i32, ClientError> {
        if let Some(n) = self.remote.lock().await.get(remote) {
            return Ok(*n);
        }
        let meta = match self.client.topic(remote).await {
            Ok(meta) => meta,
            Err(e)
                if e.code() == Some(ResponseError::UnknownTopicOrPartition)
                    && self.config.create_remote_topics =>
            {
                let created = self
                    .client
                    .create_topic(&NewTopic {
                        name: remote.to_string(),
                        partitions: local_partitions,
                        replication_factor: self.config.remote_replication_factor,
                        configs: Vec::new(),
                    })
                    .await?;
                if created {
                    tracing::info!(uplink = %self.name, topic = remote, partitions = local_partitions, "created the upstream topic");
                }
                self.client.forget_topic(remote);
                self.client.topic(remote).await?
            }
            Err(e) => return Err(e),
        };
        let n = i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX);
        if n == 0 {
            return Err(ClientError::NoLeader {
                topic: remote.to_string(),
                partition: 0,
            });
        }
        self.remote.lock().await.insert(remote.to_string(), n);
        Ok(n)
    }
}

/// Why uplinks could not start.
#[derive(Debug, thiserror::Error)]
pub enum UplinkStartError {
    #[error(transparent)]
    Config(#[from] UplinkConfigError),
    #[error("uplink {uplink:?}: cannot read its progress: {source}")]
    Store {
        uplink: String,
        source: crate::log::StoreError,
    },
}

/// The running uplinks.
pub struct Running {
    tasks: TaskTracker,
    stats: Vec<Arc<UplinkStats>>,
}

impl Running {
    pub fn stats(&self) -> &[Arc<UplinkStats>] {
        &self.stats
    }

    /// Waits for every lane to save its progress and stop (after the shutdown token).
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Starts every uplink. Returns once each has registered its retention holds, so retention
/// started afterwards never deletes records an uplink still needs.
pub async fn start(
    ctx: Arc<Ctx>,
    store: Arc<dyn UplinkStore>,
    configs: Vec<UplinkConfig>,
    shutdown: CancellationToken,
) -> Result<Running, UplinkStartError> {
    let tasks = TaskTracker::new();
    let mut all_stats = Vec::new();
    for config in configs {
        let selector = config.selector()?;
        let compression = config.compression()?;
        let window = config.window()?;
        let device_id = config.device_id();
        let mut client_config = ClientConfig::new(
            config.bootstrap.join(","),
            format!("runnel-uplink-{}", config.name),
        );
        client_config.request_timeout = Duration::from_millis(config.request_timeout_ms);
        client_config.security = config.security();
        let client = Client::try_new(client_config).map_err(|e| UplinkConfigError {
            uplink: config.name.clone(),
            key: "tls",
            reason: e.to_string(),
        })?;
        let stats = Arc::new(UplinkStats::new(
            &config.name,
            &device_id,
            &config.bootstrap.join(","),
        ));
        let name: Arc<str> = Arc::from(config.name.as_str());
        let reader = store.clone();
        let uplink = config.name.clone();
        let stored = blocking(move || reader.uplink_progress(&uplink))
            .await
            .map_err(|source| UplinkStartError::Store {
                uplink: config.name.clone(),
                source,
            })?;
        let shared = Arc::new(Shared {
            ctx: ctx.clone(),
            store: store.clone(),
            name,
            device_header: Bytes::from(device_id.clone()),
            client,
            compression,
            window,
            throttle: Throttle::new(config.max_bytes_per_sec),
            stats: stats.clone(),
            remote: tokio::sync::Mutex::new(HashMap::new()),
            config,
        });
        let mut supervisor = Supervisor {
            shared: shared.clone(),
            selector,
            device_id,
            stored: stored.into_iter().collect(),
            lanes: HashMap::new(),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        };
        supervisor.sync();
        tracing::info!(
            uplink = %shared.name,
            upstream = %shared.stats.upstream,
            partitions = supervisor.lanes.len(),
            "uplink started"
        );
        tasks.spawn(supervisor.run());
        tasks.spawn(publish_status(shared, shutdown.clone()));
        all_stats.push(stats);
    }
    Ok(Running {
        tasks,
        stats: all_stats,
    })
}

/// Starts and stops the lanes of one uplink as topics come and go.
struct Supervisor {
    shared: Arc<Shared>,
    selector: TopicSelector,
    device_id: String,
    stored: HashMap<PartitionId, UplinkProgress>,
    lanes: HashMap<PartitionId, (CancellationToken, Arc<LaneStats>)>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Supervisor {
    async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(RESCAN) => self.sync(),
            }
        }
    }

    /// Starts lanes for new matching partitions and stops those whose topic is gone.
    fn sync(&mut self) {
        let ctx = self.shared.ctx.clone();
        let topics = ctx.topics.list();
        let mut live = std::collections::HashSet::new();
        for topic in topics.iter().filter(|t| self.selector.matches(t.name())) {
            let remote_topic = self
                .shared
                .config
                .remote_name(&self.device_id, topic.name());
            let local_partitions = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
            for (index, part) in topic.partitions.iter().enumerate() {
                live.insert(part.id);
                if self.lanes.contains_key(&part.id) {
                    continue;
                }
                let mut progress = self.stored.remove(&part.id).unwrap_or(UplinkProgress {
                    next_offset: part.log_start(),
                    ..UplinkProgress::default()
                });
                if progress.next_offset > part.next_offset() {
                    tracing::warn!(uplink = %self.shared.name, topic = topic.name(), partition = index, stored = progress.next_offset, end = part.next_offset(), "stored progress is past the end of the log; forwarding from the end");
                    progress.next_offset = part.next_offset();
                    progress.in_flight_end = -1;
                }
                self.shared
                    .ctx
                    .holds
                    .set(&self.shared.name, part.id, progress.next_offset);
                let stats = Arc::new(LaneStats {
                    topic: topic.name().to_string(),
                    partition: i32::try_from(index).unwrap_or(i32::MAX),
                    remote_topic: remote_topic.clone(),
                    log: part.clone(),
                    remote_partition: AtomicI32::new(progress.remote_partition),
                    next_offset: AtomicI64::new(progress.next_offset),
                    oldest_unforwarded_ms: AtomicI64::new(0),
                });
                self.shared.stats.add_lane(stats.clone());
                let stop = self.shutdown.child_token();
                let lane = lane::Lane::new(
                    self.shared.clone(),
                    part.id,
                    stats.clone(),
                    progress,
                    local_partitions,
                    stop.clone(),
                );
                self.tasks.spawn(lane.run());
                self.lanes.insert(part.id, (stop, stats));
            }
        }
        let gone: Vec<PartitionId> = self
            .lanes
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some((stop, stats)) = self.lanes.remove(&id) {
                stop.cancel();
                self.shared.stats.remove_lane(&stats);
                self.shared.ctx.holds.forget(id);
                tracing::info!(uplink = %self.shared.name, topic = %stats.topic, partition = stats.partition, "stopped forwarding a partition that is gone or no longer selected");
            }
        }
    }
}

/// Writes the uplink's status as a JSON record keyed by its name every status interval, and
/// keeps the forwarded rate.
async fn publish_status(shared: Arc<Shared>, shutdown: CancellationToken) {
    let backend = crate::bridge::EmbeddedBackend::new(shared.ctx.clone());
    let interval = Duration::from_millis(shared.config.status_interval_ms);
    let topic: Arc<str> = Arc::from(STATUS_TOPIC);
    let mut topic_ready = false;
    let mut last = (std::time::Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let forwarded = shared
            .stats
            .forwarded_records
            .load(std::sync::atomic::Ordering::Relaxed);
        let elapsed = last.0.elapsed().as_secs_f64();
        if elapsed > 0.0 {
            shared
                .stats
                .set_rate(forwarded.saturating_sub(last.1) as f64 / elapsed);
        }
        last = (std::time::Instant::now(), forwarded);
        if !topic_ready {
            match backend.ensure_topic(STATUS_TOPIC).await {
                Ok(()) => topic_ready = true,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot create the uplink status topic");
                    continue;
                }
            }
        }
        let snapshot = shared.stats.snapshot();
        let Ok(value) = serde_json::to_vec(&snapshot) else {
            continue;
        };
        let record = Record {
            topic: topic.clone(),
            key: Some(Bytes::from(snapshot.uplink.clone())),
            value: Bytes::from(value),
            timestamp_ms: snapshot.at_ms,
            headers: Vec::new(),
        };
        let batch = TopicBatch {
            topic: topic.clone(),
            partition: 0,
            records: vec![record],
        };
        if let Some(Err(e)) = backend.write(vec![batch]).await.into_iter().next() {
            tracing::debug!(error = %e, "uplink status record not written");
        }
    }
}
