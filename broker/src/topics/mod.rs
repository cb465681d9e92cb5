//! The topic registry: every topic's definition, effective config and partition logs, kept
//! in memory and persisted through [`MetaStore`].
//!
//! Invariants: names are valid and unique up to `.`/`_`; a topic's `partitions` has one log
//! per partition index; a deleted topic is gone from the registry before its data is purged.
//! Creations, deletions and config changes are serialised by one async lock so the
//! collision check and the write cannot interleave.

pub mod config;
pub mod name;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kafka_protocol::ResponseError;

use crate::config::TopicDefaults;
use crate::log::{LogStore, MetaStore, PartitionId, PartitionLog, StoreError, TopicRecord, wait};
pub use config::TopicConfig;

/// A topic as handlers see it.
#[derive(Debug)]
pub struct Topic {
    pub record: TopicRecord,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<PartitionLog>>,
}

impl Topic {
    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn id(&self) -> uuid::Uuid {
        self.record.id
    }

    pub fn partition(&self, index: i32) -> Option<&Arc<PartitionLog>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

/// A Kafka error code with the message that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = match e {
            StoreError::UnknownPartition(_) => ResponseError::UnknownTopicOrPartition,
            StoreError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            StoreError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            StoreError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
            StoreError::NotLeader => ResponseError::NotLeaderOrFollower,
            StoreError::ReplicationTimeout => ResponseError::RequestTimedOut,
            StoreError::DiskFull { .. } | StoreError::Io(_) | StoreError::Closed => {
                ResponseError::KafkaStorageError
            }
        };
        ApiError::new(code, e.to_string())
    }
}

/// A requested change to one topic config (IncrementalAlterConfigs).
#[derive(Debug, Clone)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
}

/// Most partitions one topic may have. Each partition costs a little memory and a key range;
/// far beyond what a device needs, far below what would stall the store's writer.
pub const MAX_PARTITIONS: i32 = 10_000;

fn check_partition_count(count: i32) -> Result<(), ApiError> {
    if count > MAX_PARTITIONS {
        return Err(ApiError::new(
            ResponseError::InvalidPartitions,
            format!("{count} partitions requested; at most {MAX_PARTITIONS} per topic are allowed"),
        ));
    }
    Ok(())
}

pub struct TopicRegistry {
    meta: Arc<dyn MetaStore>,
    log: Arc<dyn LogStore>,
    defaults: TopicDefaults,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    changes: tokio::sync::Mutex<()>,
}

impl TopicRegistry {
    /// Loads all persisted topics.
    pub fn load(
        meta: Arc<dyn MetaStore>,
        log: Arc<dyn LogStore>,
        defaults: TopicDefaults,
    ) -> Result<Self, StoreError> {
        let mut topics = HashMap::new();
        for record in meta.load_topics()? {
            let config = TopicConfig::new(&defaults, record.configs.clone()).unwrap_or_else(|e| {
                tracing::warn!(topic = %record.name, error = %e, "ignoring invalid stored topic config");
                TopicConfig::from_defaults(&defaults)
            });
            let topic = build(&*log, record, config)?;
            topics.insert(topic.record.name.clone(), Arc::new(topic));
        }
        Ok(TopicRegistry {
            meta,
            log,
            defaults,
            topics: RwLock::new(topics),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn defaults(&self) -> &TopicDefaults {
        &self.defaults
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    pub fn get_by_id(&self, id: uuid::Uuid) -> Option<Arc<Topic>> {
        self.read().values().find(|t| t.id() == id).cloned()
    }

    /// All topics, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a new topic's name, partitions and configs without creating it.
    pub fn check_new(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, ApiError> {
        name::validate(name).map_err(|m| ApiError::new(ResponseError::InvalidTopicException, m))?;
        if self.get(name).is_some() {
            return Err(ApiError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        let key = name::collision_key(name);
        if let Some(other) = self
            .read()
            .keys()
            .find(|n| name::collision_key(n) == key)
            .cloned()
        {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!(
                    "topic {name:?} collides with existing topic {other:?} ('.' and '_' are equivalent)"
                ),
            ));
        }
        if partitions < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be at least 1, got {partitions}"),
            ));
        }
        check_partition_count(partitions)?;
        TopicConfig::new(&self.defaults, configs.clone())
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))
    }

    /// Creates a topic (durably) and returns it.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, ApiError> {
        let _serial = self.changes.lock().await;
        let config = self.check_new(name, partitions, &configs)?;
        let num = wait(self.meta.next_topic_num()).await??;
        let record = TopicRecord {
            name: name.to_owned(),
            id: uuid::Uuid::new_v4(),
            num,
            partitions: partitions as u32,
            configs,
        };
        wait(self.meta.put_topic(record.clone())).await??;
        let topic = Arc::new(build(&*self.log, record, config)?);
        self.write().insert(name.to_owned(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Makes the local copy of a cluster topic match its definition (cluster mode): creates
    /// it with the cluster's id, grows its partitions, takes its configs, or re-creates it
    /// when the local copy is of an older topic with the same name. Returns whether anything
    /// changed. Names were validated by the node that proposed the topic.
    pub async fn mirror(
        &self,
        name: &str,
        id: uuid::Uuid,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<bool, ApiError> {
        let _serial = self.changes.lock().await;
        let existing = self.get(name);
        if let Some(t) = &existing {
            if t.id() == id {
                if t.record.partitions >= partitions && t.record.configs == *configs {
                    return Ok(false);
                }
                let mut record = t.record.clone();
                record.partitions = record.partitions.max(partitions);
                record.configs = configs.clone();
                self.replace(t.clone(), record).await?;
                return Ok(true);
            }
            self.write().remove(name);
            wait(self.meta.delete_topic(t.record.clone())).await??;
            tracing::info!(topic = name, "deleted the local copy of a replaced topic");
        }
        let config = TopicConfig::new(&self.defaults, configs.clone()).unwrap_or_else(|e| {
            tracing::warn!(topic = name, error = %e, "ignoring invalid replicated topic config");
            TopicConfig::from_defaults(&self.defaults)
        });
        let num = wait(self.meta.next_topic_num()).await??;
        let record = TopicRecord {
            name: name.to_owned(),
            id,
            num,
            partitions,
            configs: configs.clone(),
        };
        wait(self.meta.put_topic(record.clone())).await??;
        let topic = Arc::new(build(&*self.log, record, config)?);
        self.write().insert(name.to_owned(), topic);
        tracing::info!(
            topic = name,
            partitions,
            "created the local copy of a cluster topic"
        );
        Ok(true)
    }

    /// Deletes a topic; its data is purged in the background.
    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let _serial = self.changes.lock().await;
        let topic = self.get(name).ok_or_else(|| unknown(name))?;
        self.write().remove(name);
        wait(self.meta.delete_topic(topic.record.clone())).await??;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _serial = self.changes.lock().await;
        let topic = self.get(name).ok_or_else(|| unknown(name))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic {name:?} has {current} partitions; the new count must be larger, got {count}"
                ),
            ));
        }
        check_partition_count(count)?;
        if validate_only {
            return Ok(());
        }
        let mut record = topic.record.clone();
        record.partitions = count as u32;
        self.replace(topic, record).await
    }

    /// Applies config changes to a topic.
    pub async fn alter_configs(
        &self,
        name: &str,
        changes: &[ConfigChange],
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _serial = self.changes.lock().await;
        let topic = self.get(name).ok_or_else(|| unknown(name))?;
        let configs = self.with_changes(&topic, changes)?;
        if validate_only {
            return Ok(());
        }
        let mut record = topic.record.clone();
        record.configs = configs;
        self.replace(topic, record).await
    }

    /// The topic's config overrides after `changes`, validated (nothing is stored).
    pub fn changed_configs(
        &self,
        name: &str,
        changes: &[ConfigChange],
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let topic = self.get(name).ok_or_else(|| unknown(name))?;
        self.with_changes(&topic, changes)
    }

    fn with_changes(
        &self,
        topic: &Topic,
        changes: &[ConfigChange],
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let mut configs = topic.record.configs.clone();
        for change in changes {
            match change {
                ConfigChange::Set(k, v) => {
                    configs.insert(k.clone(), v.clone());
                }
                ConfigChange::Delete(k) => {
                    if !config::is_known(k) {
                        return Err(ApiError::new(
                            ResponseError::InvalidConfig,
                            format!("unknown or unsupported topic config {k:?}"),
                        ));
                    }
                    configs.remove(k);
                }
            }
        }
        TopicConfig::new(&self.defaults, configs.clone())
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        Ok(configs)
    }

    async fn replace(&self, old: Arc<Topic>, record: TopicRecord) -> Result<(), ApiError> {
        let config = TopicConfig::new(&self.defaults, record.configs.clone())
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
        wait(self.meta.put_topic(record.clone())).await??;
        let topic = Arc::new(build(&*self.log, record, config)?);
        self.write().insert(old.record.name.clone(), topic);
        Ok(())
    }
}

fn unknown(name: &str) -> ApiError {
    ApiError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    )
}

fn build(
    log: &dyn LogStore,
    record: TopicRecord,
    config: TopicConfig,
) -> Result<Topic, StoreError> {
    let partitions = (0..record.partitions)
        .map(|p| {
            let id = PartitionId {
                topic: record.num,
                partition: p,
            };
            log.partition(id).ok_or(StoreError::UnknownPartition(id))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic {
        record,
        config,
        partitions,
    })
}
