//! The pieces of the harness, one concern per file:
//! - [`binary`]: find the `runnel` executable, run it to completion, read its output;
//! - [`bridge`]: start, kill and restart a `runnel-bridge` process; its config, metrics, status;
//! - [`broker`]: start, stop, kill and restart a `runnel` process and keep its log;
//! - [`cluster`]: n `runnel` processes forming one cluster, each in its own network namespace
//!   when run as root (so a node can be cut off), and a continuous `acks=all` producer;
//! - [`clients`]: rdkafka producers, consumers and admin clients with the settings Runnel needs;
//! - [`groups`]: subscribed consumers that record their rebalances, commits, DescribeGroups;
//! - [`kcat`]: run the `kcat` command-line client;
//! - [`mosquitto`]: start, stop, kill and restart a real Mosquitto broker (optionally with TLS);
//! - [`mqtt`]: rumqttc publishers and subscribers for the MQTT tests, plain or TLS;
//! - [`pki`]: a throw-away CA, server and client certificates made with `openssl`;
//! - [`python`]: run the kafka-python / confluent-kafka scripts of `tests/compat/`;
//! - [`raw`]: Kafka requests over a plain socket, for the checks that real clients cannot make;
//! - [`socat`]: a `socat` TLS terminator in front of a plain-TCP broker;
//! - [`wire`]: framing, and requests and responses encoded by the `kafka-protocol` crate;
//! - [`wait`]: poll a condition until it holds or a deadline passes (instead of sleeping).

pub mod binary;
pub mod bridge;
pub mod broker;
pub mod clients;
pub mod cluster;
pub mod groups;
pub mod kcat;
pub mod mosquitto;
pub mod mqtt;
pub mod pki;
pub mod python;
pub mod raw;
pub mod socat;
pub mod wait;
pub mod wire;
