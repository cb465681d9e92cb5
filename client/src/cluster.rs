//! [`Client`]: the cluster as the rest of the client sees it — bootstrap servers, a metadata
//! cache (brokers, topics, partition leaders) and one [`Connection`] per broker.
//!
//! Invariants: a connection in the pool is replaced as soon as it is broken; the metadata
//! cache only ever holds what a broker answered (a refresh replaces a topic's entry whole),
//! so a stale leader is corrected by [`Client::refresh_topics`] after NOT_LEADER-style errors.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex;

use crate::conn::Connection;
use crate::error::{ClientError, Result};
use crate::security::{Security, SecurityConfig};

/// Metadata versions whose fields we fill (topic names, auto-create flag).
const METADATA_VERSIONS: (i16, i16) = (1, 12);

/// How a [`Client`] reaches the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    pub client_id: String,
    pub connect_timeout: Duration,
    /// Deadline of one request (the broker's own wait, like a fetch's max wait, is added).
    pub request_timeout: Duration,
    /// TLS and SASL; the default is plaintext.
    pub security: SecurityConfig,
}

impl ClientConfig {
    pub fn new(bootstrap: impl Into<String>, client_id: impl Into<String>) -> Self {
        ClientConfig {
            bootstrap: bootstrap
                .into()
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            client_id: client_id.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            security: SecurityConfig::default(),
        }
    }
}

/// One partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when the broker does not say (Metadata before v7).
    pub leader_epoch: i32,
    pub error_code: i16,
}

/// A broker as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMeta {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One whole Metadata answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMeta {
    pub cluster_id: Option<String>,
    /// -1 when the broker does not say (Metadata v0).
    pub controller: i32,
    pub brokers: Vec<BrokerMeta>,
    pub topics: Vec<TopicMeta>,
}

/// One topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    pub error_code: i16,
    pub partitions: Vec<PartitionMeta>,
}

#[derive(Debug, Default)]
struct MetadataCache {
    brokers: HashMap<i32, String>,
    topics: HashMap<String, TopicMeta>,
}

/// A handle to a cluster; clones share connections and metadata.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// `config.security` loaded once; an error is answered to every connection attempt.
    security: std::result::Result<Security, ClientError>,
    cache: RwLock<MetadataCache>,
    brokers: Mutex<HashMap<i32, Arc<Connection>>>,
    bootstrap: Mutex<Option<Arc<Connection>>>,
}

impl Client {
    /// A client that connects lazily; nothing is contacted until the first call. Invalid
    /// security settings (an unreadable PEM file) fail every call; [`Client::try_new`] reports
    /// them at once.
    pub fn new(config: ClientConfig) -> Self {
        let security = config.security.load().map_err(ClientError::from);
        Client::with_security(config, security)
    }

    /// Like [`Client::new`], but loads the security settings (PEM files) first and fails with
    /// [`ClientError::Security`] naming the file and the problem.
    pub fn try_new(config: ClientConfig) -> Result<Self> {
        let security = config.security.load()?;
        Ok(Client::with_security(config, Ok(security)))
    }

    fn with_security(
        config: ClientConfig,
        security: std::result::Result<Security, ClientError>,
    ) -> Self {
        Client {
            inner: Arc::new(Inner {
                config,
                security,
                cache: RwLock::new(MetadataCache::default()),
                brokers: Mutex::new(HashMap::new()),
                bootstrap: Mutex::new(None),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A healthy connection to any broker: a pooled one, else the first bootstrap server
    /// that answers.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        {
            let pool = self.inner.brokers.lock().await;
            if let Some(c) = pool.values().find(|c| !c.is_broken()) {
                return Ok(c.clone());
            }
        }
        let mut boot = self.inner.bootstrap.lock().await;
        if let Some(c) = boot.as_ref().filter(|c| !c.is_broken()) {
            return Ok(c.clone());
        }
        let mut errors = Vec::new();
        let mut security_error = None;
        for addr in &self.inner.config.bootstrap {
            match self.open(addr).await {
                Ok(c) => {
                    let c = Arc::new(c);
                    *boot = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    errors.push(e.to_string());
                    if e.is_security() {
                        security_error.get_or_insert(e);
                    }
                }
            }
        }
        // A certificate or password problem stays what it is (not retriable), rather than
        // becoming "no broker answered".
        if let Some(e) = security_error {
            return Err(e);
        }
        Err(ClientError::NoBroker(if errors.is_empty() {
            "no bootstrap servers configured".into()
        } else {
            errors.join("; ")
        }))
    }

    /// The connection to broker `node_id` (from the metadata), opened if needed.
    pub async fn broker_connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        let addr = self
            .read_cache(|c| c.brokers.get(&node_id).cloned())
            .ok_or(ClientError::UnknownBroker(node_id))?;
        let mut pool = self.inner.brokers.lock().await;
        if let Some(c) = pool
            .get(&node_id)
            .filter(|c| !c.is_broken() && c.addr() == addr)
        {
            return Ok(c.clone());
        }
        let conn = Arc::new(self.open(&addr).await?);
        pool.insert(node_id, conn.clone());
        Ok(conn)
    }

    /// The connection to broker `node_id` at `addr` (as FindCoordinator names it), learning
    /// the address when the metadata did not have it yet.
    pub async fn connection_at(&self, node_id: i32, addr: String) -> Result<Arc<Connection>> {
        if let Ok(mut cache) = self.inner.cache.write() {
            cache.brokers.entry(node_id).or_insert(addr);
        }
        self.broker_connection(node_id).await
    }

    /// The connection to the leader of `topic`/`partition`, refreshing metadata once when
    /// the cache does not know it. A topic error no retry can fix (TOPIC_AUTHORIZATION_FAILED,
    /// an invalid name) is answered as that error rather than as a missing leader.
    pub async fn leader_connection(&self, topic: &str, partition: i32) -> Result<Arc<Connection>> {
        let mut leader = self.cached_leader(topic, partition);
        if leader.is_none() {
            let metas = self.refresh_topics(&[topic], false).await?;
            leader = self.cached_leader(topic, partition);
            let error = metas
                .iter()
                .find(|m| m.name == topic)
                .and_then(|m| ClientError::kafka(format!("topic {topic}"), m.error_code));
            if leader.is_none()
                && let Some(e) = error
                && !e.is_retriable()
            {
                return Err(e);
            }
        }
        let node = leader.ok_or_else(|| ClientError::NoLeader {
            topic: topic.to_string(),
            partition,
        })?;
        self.broker_connection(node).await
    }

    /// Asks for metadata of `topics` (all topics when empty) and replaces their cache
    /// entries. With `auto_create`, a broker that allows it creates missing topics.
    pub async fn refresh_topics(
        &self,
        topics: &[&str],
        auto_create: bool,
    ) -> Result<Vec<TopicMeta>> {
        Ok(self.metadata(topics, auto_create).await?.topics)
    }

    /// The whole Metadata answer for `topics` (all topics when empty); refreshes the cache.
    pub async fn metadata(&self, topics: &[&str], auto_create: bool) -> Result<ClusterMeta> {
        let conn = self.any_connection().await?;
        let request = MetadataRequest::default()
            .with_topics(if topics.is_empty() {
                None
            } else {
                Some(
                    topics
                        .iter()
                        .map(|t| {
                            MetadataRequestTopic::default()
                                .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
                        })
                        .collect(),
                )
            })
            .with_allow_auto_topic_creation(auto_create);
        let version = conn.pick_version::<MetadataRequest>(METADATA_VERSIONS)?;
        // v1-v3 always auto-create; the flag only exists from v4.
        let request = if version < 4 {
            request.with_allow_auto_topic_creation(true)
        } else {
            request
        };
        let response = conn.call_at(&request, version).await?;
        let meta = ClusterMeta {
            cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
            controller: response.controller_id.0,
            brokers: response
                .brokers
                .iter()
                .map(|b| BrokerMeta {
                    node_id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                })
                .collect(),
            topics: response
                .topics
                .iter()
                .filter_map(|t| {
                    let name = t.name.as_ref()?.0.to_string();
                    let mut partitions: Vec<PartitionMeta> = t
                        .partitions
                        .iter()
                        .map(|p| PartitionMeta {
                            partition: p.partition_index,
                            leader: p.leader_id.0,
                            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                            leader_epoch: p.leader_epoch,
                            error_code: p.error_code,
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    Some(TopicMeta {
                        name,
                        error_code: t.error_code,
                        partitions,
                    })
                })
                .collect(),
        };
        if let Ok(mut cache) = self.inner.cache.write() {
            if !meta.brokers.is_empty() {
                cache.brokers = meta
                    .brokers
                    .iter()
                    .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
                    .collect();
            }
            if topics.is_empty() {
                cache.topics.clear();
            }
            for m in &meta.topics {
                if m.error_code == 0 {
                    cache.topics.insert(m.name.clone(), m.clone());
                } else {
                    cache.topics.remove(&m.name);
                }
            }
        }
        Ok(meta)
    }

    /// The cached description of `topic`.
    pub fn cached_topic(&self, topic: &str) -> Option<TopicMeta> {
        self.read_cache(|c| c.topics.get(topic).cloned())
    }

    /// `topic`'s description, from the cache or else from the cluster (never auto-created).
    /// An unknown topic is a [`ClientError::Kafka`] with UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn topic(&self, topic: &str) -> Result<TopicMeta> {
        if let Some(t) = self.cached_topic(topic) {
            return Ok(t);
        }
        let metas = self.refresh_topics(&[topic], false).await?;
        let meta =
            metas
                .into_iter()
                .find(|m| m.name == topic)
                .ok_or_else(|| ClientError::Protocol {
                    addr: String::new(),
                    api: "Metadata",
                    message: format!("the answer does not mention topic {topic}"),
                })?;
        match ClientError::kafka(format!("topic {topic}"), meta.error_code) {
            Some(e) => Err(e),
            None => Ok(meta),
        }
    }

    /// Drops the cached entry of `topic` so the next lookup asks the cluster.
    pub fn forget_topic(&self, topic: &str) {
        if let Ok(mut cache) = self.inner.cache.write() {
            cache.topics.remove(topic);
        }
    }

    fn cached_leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.read_cache(|c| {
            c.topics
                .get(topic)?
                .partitions
                .iter()
                .find(|p| p.partition == partition && p.leader >= 0)
                .map(|p| p.leader)
        })
    }

    fn read_cache<T>(&self, f: impl FnOnce(&MetadataCache) -> Option<T>) -> Option<T> {
        self.inner.cache.read().ok().and_then(|c| f(&c))
    }

    async fn open(&self, addr: &str) -> Result<Connection> {
        let config = &self.inner.config;
        let security = self.inner.security.as_ref().map_err(Clone::clone)?;
        Connection::connect(
            addr,
            &config.client_id,
            config.connect_timeout,
            config.request_timeout,
            security,
        )
        .await
    }
}
