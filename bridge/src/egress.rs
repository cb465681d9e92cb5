//! Topics → MQTT: records of a topic are published to an MQTT topic rendered from the rule's
//! template, and the group's committed position moves past a record only after the MQTT
//! broker acknowledged it (QoS 1).
//!
//! Invariants:
//! - one egress batch of a bridge is in flight at a time ([`PubAcks::lock`]), so counting
//!   incoming PUBACKs tells when all of it was acknowledged (rumqttc re-sends unacknowledged
//!   publishes after a reconnect of the persistent session, so the count is eventually
//!   reached);
//! - the commit follows the acknowledgements: a crash re-publishes at most the records of
//!   the uncommitted batch (at-least-once towards the devices);
//! - a record whose MQTT topic cannot be rendered (no key, a key with `+`/`#`) is skipped
//!   with an error log and counted; it stays in the topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::EgressRule;
use crate::mapping::TopicTemplate;
use crate::mqtt::{Backoff, MqttHandle};
use crate::status::BridgeStats;

/// PUBACKs received by a bridge's MQTT connection, and the lock that makes them countable.
#[derive(Debug, Default)]
pub struct PubAcks {
    count: AtomicU64,
    changed: Notify,
    lock: Mutex<()>,
}

impl PubAcks {
    /// Called by the MQTT driver for every incoming PUBACK.
    pub fn acked(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    async fn wait_for(&self, target: u64) {
        loop {
            let notified = self.changed.notified();
            if self.count.load(Ordering::Acquire) >= target {
                return;
            }
            notified.await;
        }
    }
}

/// One egress rule of one bridge.
pub struct Egress {
    pub rule: EgressRule,
    pub index: usize,
    pub group: String,
    pub backend: Arc<dyn Backend>,
    pub handle: MqttHandle,
    pub acks: Arc<PubAcks>,
    pub stats: Arc<BridgeStats>,
    pub shutdown: CancellationToken,
}

impl Egress {
    pub async fn run(self) {
        // Validated at start-up, so this only fails if validation and parsing disagree.
        let template = match TopicTemplate::parse(&self.rule.mqtt_topic) {
            Ok(t) => t,
            Err(e) => {
                self.stats
                    .set_error(format!("egress from {}: {e}", self.rule.topic));
                tracing::error!(topic = %self.rule.topic, error = %e, "egress rule not started");
                return;
            }
        };
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let partitions = loop {
            match self.backend.partitions(&self.rule.topic).await {
                Ok(n) => break n,
                Err(e) => {
                    self.stats
                        .set_error(format!("egress from {}: {e}", self.rule.topic));
                    if !self.pause(&mut backoff).await {
                        return;
                    }
                }
            }
        };
        let mut positions = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            loop {
                match self.initial_position(p).await {
                    Ok(pos) => {
                        positions.push(pos);
                        break;
                    }
                    Err(e) => {
                        self.stats
                            .set_error(format!("egress from {}/{p}: {e}", self.rule.topic));
                        if !self.pause(&mut backoff).await {
                            return;
                        }
                    }
                }
            }
        }
        // With many partitions, a short wait per read keeps every partition moving.
        let max_wait = Duration::from_millis(if partitions > 1 { 100 } else { 500 });
        let mut lags = vec![0i64; positions.len()];
        while !self.shutdown.is_cancelled() {
            for (p, pos) in positions.iter_mut().enumerate() {
                let partition = p as i32;
                let read = tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    r = self.backend.read(&self.rule.topic, partition, *pos, max_wait) => r,
                };
                let read = match read {
                    Ok(r) => r,
                    Err(e) => {
                        self.stats
                            .set_error(format!("egress read {}/{p}: {e}", self.rule.topic));
                        if !self.pause(&mut backoff).await {
                            return;
                        }
                        continue;
                    }
                };
                backoff.reset();
                if let Some(start) = read.reset_to {
                    tracing::warn!(topic = %self.rule.topic, partition, from = *pos, to = start, "egress position was deleted by retention; skipping ahead");
                    *pos = start;
                    continue;
                }
                if let Some(last) = read.records.last() {
                    let next = last.offset + 1;
                    if !self.deliver(&template, partition, &read.records).await {
                        return;
                    }
                    if !self.commit(partition, next).await {
                        return;
                    }
                    *pos = next;
                }
                lags[p] = (read.high_watermark - *pos).max(0);
                if let Some((_, _, c)) = self.stats.egress.get(self.index) {
                    c.lag.store(lags.iter().sum(), Ordering::Relaxed);
                }
            }
        }
    }

    async fn initial_position(&self, partition: i32) -> Result<i64, crate::error::SinkError> {
        match self
            .backend
            .committed(&self.group, &self.rule.topic, partition)
            .await?
        {
            Some(offset) => Ok(offset),
            None => {
                self.backend
                    .start_offset(&self.rule.topic, partition, self.rule.start)
                    .await
            }
        }
    }

    /// Publishes `records` and waits for their PUBACKs; false on shutdown.
    async fn deliver(
        &self,
        template: &TopicTemplate,
        partition: i32,
        records: &[crate::backend::SourceRecord],
    ) -> bool {
        let _turn = self.acks.lock.lock().await;
        let base = self.acks.count.load(Ordering::Acquire);
        let mut sent = 0u64;
        for r in records {
            let topic = match template.render(r.key.as_deref(), &self.rule.topic, partition) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(topic = %self.rule.topic, partition, offset = r.offset, error = %e, "record not published to MQTT");
                    self.stats.set_error(format!(
                        "egress {}/{partition}@{}: {e}",
                        self.rule.topic, r.offset
                    ));
                    continue;
                }
            };
            let payload = r.value.clone().unwrap_or_default();
            if let Err(e) = self
                .handle
                .publish(topic, payload, self.rule.qos, self.rule.retain)
                .await
            {
                tracing::debug!(error = %e, "publish not queued; the MQTT client is stopping");
                return false;
            }
            sent += 1;
        }
        if self.rule.qos > 0 {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = self.acks.wait_for(base + sent) => {}
            }
        }
        if let Some((_, _, c)) = self.stats.egress.get(self.index) {
            c.delivered.fetch_add(sent, Ordering::Relaxed);
        }
        true
    }

    async fn commit(&self, partition: i32, next: i64) -> bool {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self
                .backend
                .commit(&self.group, &self.rule.topic, partition, next)
                .await
            {
                Ok(()) => return true,
                Err(e) => {
                    self.stats.set_error(format!(
                        "egress commit {}/{partition}: {e}",
                        self.rule.topic
                    ));
                    if !self.pause(&mut backoff).await {
                        return false;
                    }
                }
            }
        }
    }

    async fn pause(&self, backoff: &mut Backoff) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(backoff.next_delay()) => true,
        }
    }
}
