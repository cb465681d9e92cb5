//! Background retention: every `storage.retention_check_interval_ms`, each partition's log
//! start moves past batches older than `retention.ms` and past the oldest batches while the
//! partition would still hold at least `retention.bytes` without them (Kafka's rule).
//! Deletion goes through the store in bounded chunks, so produce and fetch keep flowing.
//! Each pass also forgets idempotent-producer state idle for longer than
//! [`PRODUCER_ID_EXPIRATION_MS`] (Kafka's `producer.id.expiration.ms` default), and deletes
//! the committed offsets of groups that have no members and whose newest commit is older
//! than `groups.offsets_retention_minutes` (Kafka's `offsets.retention.minutes`); the
//! coordinator then forgets such a group. Groups with members never lose offsets here.
//!
//! Uplinks hold partitions ([`crate::uplink::Holds`]): retention never moves a log start past
//! the first record an uplink has not forwarded. Only a full disk overrides that: when an
//! append fails for the disk budget, [`relieve`] runs at once and frees space in held
//! partitions, forwarded records first, then the oldest unforwarded ones (which the uplink
//! counts as dropped, logs and reports).

use std::sync::Arc;
use std::time::Duration;

use crate::handlers::{Ctx, blocking};
use crate::log::{self, Retention};

/// One minute.
const MINUTE_MS: i64 = 60_000;
/// Least time between two disk-budget reliefs.
const RELIEF_PAUSE: Duration = Duration::from_millis(200);

/// Idle time after which a producer's sequence state is dropped; a producer returning later
/// starts afresh (any sequence is accepted from a producer with no state).
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

pub async fn run(ctx: Arc<Ctx>) {
    let period = Duration::from_millis(ctx.config.storage.retention_check_interval_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => enforce(&ctx).await,
            _ = ctx.disk_pressure.notified() => {
                relieve(&ctx).await;
                // Producers retry within milliseconds; give the freed pages time to be used
                // before judging the disk full again.
                tokio::time::sleep(RELIEF_PAUSE).await;
            }
        }
    }
}

/// One retention pass over every partition.
pub async fn enforce(ctx: &Ctx) {
    let now = log::now_ms();
    match log::wait(ctx.log.expire_producers(now - PRODUCER_ID_EXPIRATION_MS)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(expired = n, "forgot idle idempotent producers"),
        Ok(Err(e)) | Err(e) => tracing::warn!(error = %e, "producer expiry failed"),
    }
    expire_offsets(ctx, now).await;
    for topic in ctx.topics.list() {
        let c = &topic.config;
        let policy = Retention {
            before_timestamp: (c.retention_ms >= 0).then(|| now.saturating_sub(c.retention_ms)),
            max_bytes: u64::try_from(c.retention_bytes).ok(),
        };
        if policy.before_timestamp.is_none() && policy.max_bytes.is_none() {
            continue;
        }
        for part in &topic.partitions {
            if ctx.shutdown.is_cancelled() {
                return;
            }
            let log = ctx.log.clone();
            let id = part.id;
            let target = match blocking(move || log.retention_point(id, policy)).await {
                // Never past what an uplink still has to forward.
                Ok(t) => ctx.holds.hold(id).map_or(t, |hold| t.min(hold)),
                Err(e) => {
                    tracing::warn!(topic = topic.name(), partition = id.partition, error = %e, "retention check failed");
                    continue;
                }
            };
            if target <= part.log_start() {
                continue;
            }
            match log::truncate(&*ctx.log, part, target).await {
                Ok(log_start) => tracing::info!(
                    topic = topic.name(),
                    partition = id.partition,
                    log_start_offset = log_start,
                    "retention deleted old batches"
                ),
                Err(e) => {
                    tracing::warn!(topic = topic.name(), partition = id.partition, error = %e, "retention delete failed")
                }
            }
        }
    }
}

/// Deletes the offsets of empty groups whose newest commit is older than the retention.
async fn expire_offsets(ctx: &Ctx, now: i64) {
    let minutes = i64::try_from(ctx.config.groups.offsets_retention_minutes).unwrap_or(i64::MAX);
    let before = now.saturating_sub(minutes.saturating_mul(MINUTE_MS));
    let store = ctx.offsets.clone();
    let groups = match blocking(move || store.offset_groups()).await {
        Ok(groups) => groups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list groups for offset expiry");
            return;
        }
    };
    let empty: Vec<String> = groups
        .into_iter()
        .filter(|g| ctx.groups.is_empty(g))
        .collect();
    if empty.is_empty() {
        return;
    }
    match log::wait(ctx.offsets.expire_offsets(empty, before)).await {
        Ok(Ok(expired)) => {
            for group in expired {
                ctx.groups.forget_if_empty(&group);
                tracing::info!(group_id = group, "expired committed offsets of empty group");
            }
        }
        Ok(Err(e)) | Err(e) => tracing::warn!(error = %e, "offset expiry failed"),
    }
}

/// Frees space after an append failed for the disk budget, in partitions uplinks hold: first
/// their already-forwarded records (the space a full edge device needs most is for new data),
/// and only when none are left, the oldest tenth (at least one batch) of each held partition's
/// unforwarded records. Partitions nobody holds are left to normal retention, as before.
pub async fn relieve(ctx: &Ctx) {
    let held = ctx.holds.all();
    let mut freed = false;
    for (id, hold) in &held {
        let Some(part) = ctx.log.partition(*id) else {
            continue;
        };
        let target = (*hold).min(part.next_offset());
        if target > part.log_start() {
            match log::truncate(&*ctx.log, &part, target).await {
                Ok(_) => freed = true,
                Err(e) => tracing::warn!(partition = %id, error = %e, "disk relief failed"),
            }
        }
    }
    if freed {
        tracing::info!("disk budget full: deleted records uplinks had already forwarded");
        return;
    }
    for (id, _) in held {
        let Some(part) = ctx.log.partition(id) else {
            continue;
        };
        let start = part.log_start();
        if start >= part.next_offset() {
            continue;
        }
        let log = ctx.log.clone();
        let keep = part.size_bytes() / 10 * 9;
        let target = blocking(move || {
            let point = log.retention_point(
                id,
                Retention {
                    before_timestamp: None,
                    max_bytes: Some(keep),
                },
            )?;
            if point > start {
                return Ok(point);
            }
            // The first batch alone is more than a tenth: delete just that one.
            let chunk = log.read(id, start, 1, true)?;
            Ok(crate::protocol::batch::stored_header(&chunk.records)
                .map_or(start, |h| h.last_offset + 1))
        })
        .await;
        match target {
            Ok(target) if target > start => match log::truncate(&*ctx.log, &part, target).await {
                Ok(now) => tracing::warn!(
                    partition = %id,
                    records = now - start,
                    from_offset = start,
                    to_offset = now,
                    "disk budget full: deleted the oldest records not yet forwarded"
                ),
                Err(e) => tracing::warn!(partition = %id, error = %e, "disk relief failed"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(partition = %id, error = %e, "disk relief failed"),
        }
    }
}
