//! `runnel-admin`: the desktop app an operator keeps open to watch and manage a fleet of edge
//! brokers — Runnel or any Kafka-compatible cluster, over the Kafka protocol only
//! (`runnel-client`).
//!
//! - [`worker`]: a background tokio runtime owns every connection; the UI sends commands and
//!   never waits on the network;
//! - [`profile`]: saved connection profiles with TLS and SASL, and how passwords are kept;
//! - [`state`]: plain data the panels draw, with how fresh it is;
//! - [`history`]: consumer-group lag over time (persisted) and the status judged from it;
//! - [`replication`]: the Brokers screen's rows and the partitions that need attention;
//! - [`status`]: the newest status record of each Runnel bridge and uplink, and when it is stale;
//! - [`app`]: the eframe app (draws only) and [`panels`], one per screen.

pub mod app;
pub mod history;
pub mod panels;
pub mod profile;
pub mod replication;
pub mod state;
pub mod status;
pub mod worker;
