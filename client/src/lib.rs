//! The workspace's one Kafka client, built on the `kafka-protocol` crate's codecs.
//!
//! Used by the MQTT bridge (producing to Runnel or any Kafka cluster, and reading for egress),
//! and meant for the admin GUI and the uplink. It speaks only what those need, and speaks it
//! carefully:
//! - [`Connection`]: one socket, version negotiation, one request at a time with a deadline;
//! - [`Client`]: bootstrap, metadata cache, a connection per broker, leader lookup;
//! - [`Producer`]: idempotent acks=all batches with retries ([`producer`] explains the rules);
//! - fetch / list offsets ([`consumer`]) and committed offsets of a group ([`offsets`]);
//! - [`partitioner`]: Kafka's murmur2 key partitioner;
//! - [`security`]: TLS and SASL (PLAIN, SCRAM-SHA-256/512), Kafka's `security.protocol`.

pub mod admin;
pub mod cluster;
pub mod conn;
pub mod consumer;
pub mod error;
pub mod offsets;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod security;

pub use admin::acls::{
    AclBinding, AclFilter, AclOperation, AclPatternType, AclPermission, AclResourceType,
};
pub use admin::cluster::{ClusterBroker, ClusterDescription};
pub use admin::groups::{GroupDescription, GroupListing, GroupMember, PartitionOffsets};
pub use admin::{ConfigChange, ConfigEntry, NewTopic};
pub use cluster::{BrokerMeta, Client, ClientConfig, ClusterMeta, PartitionMeta, TopicMeta};
pub use conn::Connection;
pub use consumer::{FetchOptions, Fetched, OffsetSpec};
pub use error::{ClientError, Result};
pub use kafka_protocol::ResponseError;
pub use kafka_protocol::records::Compression;
pub use producer::{EncodedBatch, PartitionBatch, Producer, ProducerConfig};
pub use records::{InRecord, OutRecord};
pub use security::{SaslMechanism, SaslSettings, SecurityConfig, TlsSettings};
