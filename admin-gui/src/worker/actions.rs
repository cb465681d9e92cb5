//! What the user asks of a cluster: create/delete topics, edit configs, load a topic's or a
//! group's detail, preview and apply an offset reset, browse and produce messages. Each
//! action has the configured timeout, can be cancelled, and reports its outcome in plain
//! words next to the thing it acted on ([`crate::state::ActionResult`]).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use runnel_client::{
    Client, FetchOptions, NewTopic, OffsetSpec, OutRecord, PartitionBatch, PartitionOffsets,
    Producer, ProducerConfig,
};
use tokio_util::sync::CancellationToken;

use super::refresh::lag_of;
use super::{BrowseFrom, ClusterCtx, Command, ResetTarget};
use crate::state::{GroupDetail, GroupPartitionRow, MessageRow, PartitionRow, TopicDetail};

/// Most records the message browser holds.
pub const MAX_BROWSE: usize = 500;

type Outcome = Result<String, String>;

/// Runs one command to completion, timeout or cancellation.
pub async fn run(ctx: ClusterCtx, command: Command, cancel: CancellationToken) {
    let label = describe(&command);
    let limit = ctx.timing.request_timeout * 2;
    let outcome = tokio::select! {
        _ = cancel.cancelled() => Err("cancelled".to_string()),
        r = tokio::time::timeout(limit, perform(&ctx, command)) => match r {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        },
    };
    if let Some(label) = label {
        ctx.result(label, outcome);
    }
}

/// The words shown next to an action's outcome; loads that only fill a screen have none
/// unless they fail.
fn describe(command: &Command) -> Option<String> {
    Some(match command {
        Command::CreateTopic { name, .. } => format!("create topic {name}"),
        Command::DeleteTopic { name, .. } => format!("delete topic {name}"),
        Command::AlterConfigs { topic, .. } => format!("edit configs of {topic}"),
        Command::LoadTopic { name, .. } => format!("load topic {name}"),
        Command::LoadGroup { group, .. } => format!("load group {group}"),
        Command::PreviewReset { group, .. } => format!("preview reset of {group}"),
        Command::ApplyReset { group, .. } => format!("reset offsets of {group}"),
        Command::Browse {
            topic, partition, ..
        } => format!("browse {topic}/{partition}"),
        Command::Produce { topic, .. } => format!("produce to {topic}"),
        Command::Access { action, .. } => action.label(),
        _ => return None,
    })
}

async fn perform(ctx: &ClusterCtx, command: Command) -> Outcome {
    let client = &ctx.client;
    let e = |e: runnel_client::ClientError| e.to_string();
    match command {
        Command::Access { action, .. } => super::access::perform(ctx, action).await,
        Command::CreateTopic {
            name,
            partitions,
            replication,
            configs,
            ..
        } => {
            let created = client
                .create_topic(&NewTopic {
                    name: name.clone(),
                    partitions,
                    replication_factor: replication,
                    configs,
                })
                .await
                .map_err(e)?;
            ctx.refresh_soon();
            Ok(if created {
                format!("topic {name} created")
            } else {
                format!("topic {name} already exists")
            })
        }
        Command::DeleteTopic { name, .. } => {
            client.delete_topic(&name).await.map_err(e)?;
            ctx.update(|view, _| {
                view.topics.retain(|t| t.name != name);
                if view.topic_detail.as_ref().is_some_and(|d| d.name == name) {
                    view.topic_detail = None;
                }
            });
            ctx.refresh_soon();
            Ok(format!("topic {name} deleted"))
        }
        Command::LoadTopic { name, .. } => {
            let detail = topic_detail(client, &name).await.map_err(e)?;
            ctx.update(|view, _| view.topic_detail = Some(detail));
            Ok(format!("topic {name} loaded"))
        }
        Command::AlterConfigs { topic, changes, .. } => {
            client
                .alter_topic_configs(&topic, &changes)
                .await
                .map_err(e)?;
            let detail = topic_detail(client, &topic).await.map_err(e)?;
            ctx.update(|view, _| view.topic_detail = Some(detail));
            Ok(format!(
                "{} config change(s) applied to {topic}",
                changes.len()
            ))
        }
        Command::LoadGroup { group, .. } => {
            let detail = group_detail(client, &group).await.map_err(e)?;
            ctx.update(|view, _| view.group_detail = Some(detail));
            Ok(format!("group {group} loaded"))
        }
        Command::PreviewReset { group, target, .. } => {
            let offsets = reset_offsets(client, &group, target).await?;
            let n = offsets.len();
            ctx.update(|view, _| view.reset_preview = Some((group.clone(), offsets)));
            Ok(format!("preview: {n} partition(s) of {group} would move"))
        }
        Command::ApplyReset { group, offsets, .. } => {
            ensure_empty(client, &group).await?;
            let list: Vec<(String, i32, i64)> = offsets
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect();
            client.commit_offsets(&group, &list).await.map_err(e)?;
            let detail = group_detail(client, &group).await.map_err(e)?;
            ctx.update(|view, _| {
                view.group_detail = Some(detail);
                view.reset_preview = None;
            });
            ctx.refresh_soon();
            Ok(format!(
                "offsets of {} partition(s) of {group} reset",
                list.len()
            ))
        }
        Command::Browse {
            topic,
            partition,
            from,
            max,
            ..
        } => {
            let rows = browse(client, &topic, partition, from, max.min(MAX_BROWSE))
                .await
                .map_err(e)?;
            let n = rows.len();
            ctx.update(|view, _| view.messages = rows);
            Ok(format!("{n} record(s) of {topic}/{partition}"))
        }
        Command::Produce {
            topic,
            partition,
            key,
            value,
            headers,
            ..
        } => {
            let meta = client.topic(&topic).await.map_err(e)?;
            let count = meta.partitions.len().max(1) as i32;
            let partition = match (partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => {
                    runnel_client::partitioner::partition_for_key(k.as_bytes(), count)
                }
                (None, None) => 0,
            };
            let record = OutRecord {
                key: key.map(Bytes::from),
                value: Some(Bytes::from(value)),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k, Some(Bytes::from(v))))
                    .collect(),
                timestamp_ms: super::refresh::now_ms(),
            };
            let producer = Producer::new(
                client.clone(),
                ProducerConfig {
                    delivery_timeout: ctx.timing.request_timeout,
                    ..ProducerConfig::default()
                },
            );
            let result = producer
                .send(vec![PartitionBatch {
                    topic: topic.clone(),
                    partition,
                    records: vec![record],
                }])
                .await
                .into_iter()
                .next()
                .unwrap_or_else(|| {
                    Err(runnel_client::ClientError::NoBroker("nothing sent".into()))
                });
            let offset = result.map_err(e)?;
            ctx.refresh_soon();
            Ok(format!("written to {topic}/{partition} at offset {offset}"))
        }
        Command::Connect { .. }
        | Command::Disconnect { .. }
        | Command::RefreshNow { .. }
        | Command::Cancel { .. }
        | Command::WatchAccess { .. } => Ok(String::new()),
    }
}

async fn topic_detail(client: &Client, name: &str) -> runnel_client::Result<TopicDetail> {
    let meta = client.metadata(&[name], false).await?;
    let topic = meta.topics.into_iter().find(|t| t.name == name);
    let topic = match topic {
        Some(t) if t.error_code == 0 => t,
        Some(t) => {
            return Err(
                runnel_client::ClientError::kafka(format!("topic {name}"), t.error_code)
                    .unwrap_or(runnel_client::ClientError::NoBroker(String::new())),
            );
        }
        None => {
            return Err(runnel_client::ClientError::NoBroker(format!(
                "topic {name} is not in the metadata"
            )));
        }
    };
    let parts: Vec<(String, i32)> = topic
        .partitions
        .iter()
        .map(|p| (name.to_string(), p.partition))
        .collect();
    let starts = client.start_offsets(&parts).await?;
    let ends = client.end_offsets(&parts).await?;
    let configs = client.describe_topic_configs(name).await?;
    // Sizes are an extra: a cluster without DescribeLogDirs still shows the rest.
    let sizes = client.log_dir_sizes(&[name]).await.ok().flatten();
    Ok(TopicDetail {
        name: name.to_string(),
        partitions: topic
            .partitions
            .iter()
            .map(|p| {
                let key = (name.to_string(), p.partition);
                PartitionRow {
                    partition: p.partition,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    low: starts.get(&key).copied().unwrap_or(0),
                    high: ends.get(&key).copied().unwrap_or(0),
                    size: sizes.as_ref().and_then(|s| s.get(&key).copied()),
                }
            })
            .collect(),
        configs,
    })
}

async fn group_detail(client: &Client, group: &str) -> runnel_client::Result<GroupDetail> {
    let description = client.describe_group(group).await?;
    let committed = client.group_offsets(group).await?;
    let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &description.members {
        for (t, p) in &m.assignment {
            owners.insert((t.clone(), *p), m.member_id.clone());
        }
    }
    let mut keys: Vec<(String, i32)> = committed.keys().cloned().collect();
    keys.extend(
        owners
            .keys()
            .filter(|k| !committed.contains_key(*k))
            .cloned(),
    );
    let ends = if keys.is_empty() {
        PartitionOffsets::new()
    } else {
        client.end_offsets(&keys).await?
    };
    let partitions = keys
        .into_iter()
        .map(|key| {
            let committed = committed.get(&key).copied().unwrap_or(-1);
            let end = ends.get(&key).copied().unwrap_or(0);
            GroupPartitionRow {
                topic: key.0.clone(),
                partition: key.1,
                committed,
                end,
                lag: if committed >= 0 {
                    (end - committed).max(0)
                } else {
                    0
                },
                owner: owners.get(&key).cloned(),
            }
        })
        .collect();
    debug_assert!(lag_of(&committed, &ends) >= 0);
    Ok(GroupDetail {
        description,
        partitions,
    })
}

async fn ensure_empty(client: &Client, group: &str) -> Result<(), String> {
    let d = client
        .describe_group(group)
        .await
        .map_err(|e| e.to_string())?;
    if d.members.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "group {group} has {} active member(s) (state {}); stop its consumers before resetting offsets",
            d.members.len(),
            d.state
        ))
    }
}

/// The offsets a reset to `target` would commit, for the group's committed partitions.
async fn reset_offsets(
    client: &Client,
    group: &str,
    target: ResetTarget,
) -> Result<BTreeMap<(String, i32), i64>, String> {
    ensure_empty(client, group).await?;
    let e = |e: runnel_client::ClientError| e.to_string();
    let committed = client.group_offsets(group).await.map_err(e)?;
    if committed.is_empty() {
        return Err(format!("group {group} has no committed offsets to reset"));
    }
    let keys: Vec<(String, i32)> = committed.keys().cloned().collect();
    let starts = client.start_offsets(&keys).await.map_err(e)?;
    let ends = client.end_offsets(&keys).await.map_err(e)?;
    let targets = match target {
        ResetTarget::Earliest => starts.clone(),
        ResetTarget::Latest => ends.clone(),
        ResetTarget::Timestamp(ms) => client.offsets_for_time(&keys, ms).await.map_err(e)?,
        ResetTarget::Offset(o) => keys.iter().map(|k| (k.clone(), o)).collect(),
    };
    Ok(keys
        .into_iter()
        .map(|k| {
            let lo = starts.get(&k).copied().unwrap_or(0);
            let hi = ends.get(&k).copied().unwrap_or(lo);
            let t = targets.get(&k).copied().unwrap_or(hi).clamp(lo, hi.max(lo));
            (k, t)
        })
        .collect())
}

async fn browse(
    client: &Client,
    topic: &str,
    partition: i32,
    from: BrowseFrom,
    max: usize,
) -> runnel_client::Result<Vec<MessageRow>> {
    let start = client
        .list_offset(topic, partition, OffsetSpec::Earliest)
        .await?;
    let end = client
        .list_offset(topic, partition, OffsetSpec::Latest)
        .await?;
    let mut offset = match from {
        BrowseFrom::Offset(o) => o.clamp(start, end),
        BrowseFrom::Timestamp(ms) => client
            .list_offset(topic, partition, OffsetSpec::Timestamp(ms))
            .await?
            .max(start),
        BrowseFrom::Latest(n) => (end - n).max(start),
    };
    if offset < 0 {
        offset = end;
    }
    let mut rows = Vec::new();
    let options = FetchOptions {
        max_wait: Duration::ZERO,
        ..FetchOptions::default()
    };
    while rows.len() < max && offset < end {
        let fetched = client.fetch(topic, partition, offset, options).await?;
        let Some(last) = fetched.records.last().map(|r| r.offset) else {
            break;
        };
        for r in fetched.records.into_iter().take(max - rows.len()) {
            rows.push(MessageRow {
                partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
                key: r.key.map(|k| k.to_vec()),
                value: r.value.map(|v| v.to_vec()),
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k, v.map(|v| v.to_vec())))
                    .collect(),
            });
        }
        offset = last + 1;
    }
    Ok(rows)
}
