//! The periodic overview of one cluster: brokers and topics (Metadata), record counts and
//! rates (ListOffsets), sizes (DescribeLogDirs) and retention (one DescribeConfigs for all
//! topics), groups with members and lag (ListGroups, DescribeGroups, OffsetFetch), and the
//! status records of bridges and uplinks ([`super::status_topic`]). Everything goes into the
//! view at once, so the screen never shows half of a refresh; a failed refresh leaves the last
//! data, marked stale. Sizes, retention and status records are extras: a cluster that cannot
//! tell them shows `-`, and a failed ask keeps the last values, without failing the refresh.
//! ACLs and SCRAM users ([`super::access`]) are extras of the same kind, loaded once watched;
//! so is DescribeCluster, which adds fenced brokers to the Brokers screen
//! ([`crate::replication`]); without it the screen is built from Metadata alone.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use runnel_client::admin::log_dirs::PartitionSizes;
use runnel_client::{ClientError, ClusterDescription, ClusterMeta, PartitionOffsets};

use super::ClusterCtx;
use super::status_topic::{BRIDGE_STATUS_TOPIC, StatusTopic, UPLINK_STATUS_TOPIC};
use crate::history::Sample;
use crate::replication::{BrokersView, brokers_view};
use crate::state::{BrokerStatus, GroupRow, GroupStatus, Retention, TopicRow};
use crate::status::{StatusRecord, UplinkStatus};

/// The topic configs the list shows.
const RETENTION_KEYS: [&str; 2] = ["retention.ms", "retention.bytes"];

/// Remembers the previous end offsets, for message rates, the last sizes and retention, kept
/// when asking for them fails once, and the newest status record of each bridge and uplink.
#[derive(Debug)]
pub struct Refresher {
    previous: HashMap<String, (Instant, i64)>,
    /// `None`: the cluster does not serve DescribeLogDirs (or never answered it).
    sizes: Option<PartitionSizes>,
    retention: HashMap<String, Retention>,
    /// `None`: the cluster does not serve DescribeCluster (or never answered it).
    described: Option<ClusterDescription>,
    bridges: StatusTopic<serde_json::Value>,
    uplinks: StatusTopic<UplinkStatus>,
    /// Whether ACLs and SCRAM users are loaded too (the Access screen was opened).
    pub watch_access: bool,
}

impl Default for Refresher {
    fn default() -> Self {
        Refresher {
            previous: HashMap::new(),
            sizes: None,
            retention: HashMap::new(),
            described: None,
            bridges: StatusTopic::new(BRIDGE_STATUS_TOPIC),
            uplinks: StatusTopic::new(UPLINK_STATUS_TOPIC),
            watch_access: false,
        }
    }
}

struct Overview {
    meta: ClusterMeta,
    brokers: BTreeMap<i32, BrokerStatus>,
    brokers_view: BrokersView,
    topics: Vec<TopicRow>,
    groups: Vec<(GroupRow, Sample)>,
    bridges: BTreeMap<String, StatusRecord<serde_json::Value>>,
    uplinks: BTreeMap<String, StatusRecord<UplinkStatus>>,
}

impl Refresher {
    pub async fn refresh(&mut self, ctx: &ClusterCtx) {
        // The whole refresh gets a few request timeouts; each request has its own.
        let budget = ctx.timing.request_timeout * 3;
        let outcome = match tokio::time::timeout(budget, self.overview(ctx)).await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no complete answer within {} s", budget.as_secs())),
        };
        // An extra like sizes: its own outcome, never the refresh's.
        let access = match outcome.is_ok() && self.watch_access {
            true => tokio::time::timeout(budget, super::access::load(ctx))
                .await
                .ok(),
            false => None,
        };
        let now = Instant::now();
        let now_ms = now_ms();
        ctx.update(|view, history| match outcome {
            Ok(o) => {
                for (row, sample) in &o.groups {
                    history.record(&view.profile.name, &row.group_id, *sample);
                }
                view.groups = o
                    .groups
                    .into_iter()
                    .map(|(mut row, _)| {
                        row.status =
                            history.status(&view.profile.name, &row.group_id, row.members, now_ms);
                        row
                    })
                    .collect();
                view.meta = Some(o.meta);
                view.brokers = o.brokers;
                view.brokers_view = Some(o.brokers_view);
                view.topics = o.topics;
                view.bridges = o.bridges;
                view.uplinks = o.uplinks;
                if let Some((acls, users)) = access {
                    view.access.acls.store(acls);
                    view.access.users.store(users);
                }
                view.mark(Ok(()), now);
            }
            Err(e) => view.mark(Err(e), now),
        });
    }

    async fn overview(&mut self, ctx: &ClusterCtx) -> runnel_client::Result<Overview> {
        let client = &ctx.client;
        let meta = client.metadata(&[], false).await?;
        let partitions: Vec<(String, i32)> = meta
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
            .collect();
        let (starts, ends) = if partitions.is_empty() {
            (PartitionOffsets::new(), PartitionOffsets::new())
        } else {
            (
                client.start_offsets(&partitions).await?,
                client.end_offsets(&partitions).await?,
            )
        };
        self.refresh_sizes(ctx).await;
        self.refresh_retention(ctx, &meta).await;
        self.refresh_described(ctx).await;
        let now = Instant::now();
        let mut topics = Vec::with_capacity(meta.topics.len());
        for t in meta.topics.iter().filter(|t| t.error_code == 0) {
            let (mut records, mut high, mut size) = (0, 0, None::<u64>);
            for p in &t.partitions {
                let key = (t.name.clone(), p.partition);
                let end = ends.get(&key).copied().unwrap_or(0);
                records += end - starts.get(&key).copied().unwrap_or(0);
                high += end;
                if let Some(bytes) = self.sizes.as_ref().and_then(|s| s.get(&key)) {
                    size = Some(size.unwrap_or(0) + bytes);
                }
            }
            let rate = self.previous.get(&t.name).and_then(|(at, before)| {
                let secs = now.duration_since(*at).as_secs_f64();
                (secs > 0.0).then(|| (high - before).max(0) as f64 / secs)
            });
            self.previous.insert(t.name.clone(), (now, high));
            topics.push(TopicRow {
                name: t.name.clone(),
                partitions: t.partitions.len(),
                replication: t.partitions.first().map_or(0, |p| p.replicas.len()),
                records,
                rate,
                under_replicated: t
                    .partitions
                    .iter()
                    .filter(|p| p.isr.len() < p.replicas.len())
                    .count(),
                size,
                retention: self.retention.get(&t.name).copied().unwrap_or_default(),
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let groups = self.groups(ctx, &ends).await?;
        let bridges = self.bridges.read(ctx, &meta, &starts, &ends).await;
        let uplinks = self.uplinks.read(ctx, &meta, &starts, &ends).await;
        let brokers = brokers(ctx, &meta).await;
        let brokers_view = brokers_view(&meta, self.described.as_ref());
        Ok(Overview {
            meta,
            brokers,
            brokers_view,
            topics,
            groups,
            bridges,
            uplinks,
        })
    }

    /// Every partition's size; the last known sizes when the ask fails.
    async fn refresh_sizes(&mut self, ctx: &ClusterCtx) {
        match ctx.client.log_dir_sizes(&[]).await {
            Ok(sizes) => self.sizes = sizes,
            Err(e) => tracing::debug!(error = %e, "partition sizes unavailable"),
        }
    }

    /// The brokers (fenced ones too) and the controller; the last known answer when the ask
    /// fails, none when the cluster does not serve DescribeCluster.
    async fn refresh_described(&mut self, ctx: &ClusterCtx) {
        match ctx.client.describe_cluster(true).await {
            Ok(d) => self.described = Some(d),
            Err(ClientError::UnsupportedApi { .. }) => self.described = None,
            Err(e) => tracing::debug!(error = %e, "DescribeCluster unavailable"),
        }
    }

    /// Every topic's retention, in one DescribeConfigs request; the last known values when
    /// the ask fails.
    async fn refresh_retention(&mut self, ctx: &ClusterCtx, meta: &ClusterMeta) {
        let names: Vec<&str> = meta
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .map(|t| t.name.as_str())
            .collect();
        let described = match ctx
            .client
            .describe_configs_of_topics(&names, Some(&RETENTION_KEYS))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "topic retention unavailable");
                return;
            }
        };
        let value = |configs: &[runnel_client::ConfigEntry], key: &str| {
            configs
                .iter()
                .find(|c| c.name == key)
                .and_then(|c| c.value.as_deref()?.parse().ok())
        };
        self.retention = described
            .into_iter()
            .filter_map(|(name, configs)| {
                let configs = configs.ok()?;
                let retention = Retention {
                    ms: value(&configs, RETENTION_KEYS[0]),
                    bytes: value(&configs, RETENTION_KEYS[1]),
                };
                Some((name, retention))
            })
            .collect();
    }

    async fn groups(
        &self,
        ctx: &ClusterCtx,
        ends: &PartitionOffsets,
    ) -> runnel_client::Result<Vec<(GroupRow, Sample)>> {
        let client = &ctx.client;
        let at_ms = now_ms();
        let mut rows = Vec::new();
        for listing in client.list_groups().await? {
            let description = client.describe_group(&listing.group_id).await?;
            let committed = client.group_offsets(&listing.group_id).await?;
            let lag = lag_of(&committed, ends);
            let sum: i64 = committed.values().sum();
            rows.push((
                GroupRow {
                    group_id: listing.group_id,
                    state: description.state,
                    members: description.members.len(),
                    lag,
                    status: GroupStatus::Unknown,
                },
                Sample {
                    at_ms,
                    lag,
                    committed: sum,
                },
            ));
        }
        Ok(rows)
    }
}

/// Sum over committed partitions of end − committed (never negative).
pub fn lag_of(committed: &PartitionOffsets, ends: &PartitionOffsets) -> i64 {
    committed
        .iter()
        .map(|(k, c)| ends.get(k).map_or(0, |e| (e - c).max(0)))
        .sum()
}

/// Asks each broker for its own configs: whether it is reachable, and Runnel's live state.
async fn brokers(ctx: &ClusterCtx, meta: &ClusterMeta) -> BTreeMap<i32, BrokerStatus> {
    const KEYS: [&str; 5] = [
        "runnel.version",
        "runnel.uptime.ms",
        "runnel.disk.used.bytes",
        "runnel.rss.bytes",
        "log.max.disk.bytes",
    ];
    let mut out = BTreeMap::new();
    for b in &meta.brokers {
        let status = match ctx.client.describe_broker_configs(b.node_id).await {
            Ok(configs) => BrokerStatus {
                reachable: true,
                error: None,
                stats: configs
                    .into_iter()
                    .filter(|c| KEYS.contains(&c.name.as_str()))
                    .filter_map(|c| Some((c.name, c.value?)))
                    .collect(),
            },
            Err(e) => BrokerStatus {
                reachable: false,
                error: Some(e.to_string()),
                stats: BTreeMap::new(),
            },
        };
        out.insert(b.node_id, status);
    }
    out
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
