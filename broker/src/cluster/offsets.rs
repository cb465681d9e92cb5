//! Group offsets in cluster mode: the [`OffsetStore`] the group handlers use, backed by the
//! replicated metadata instead of the local store. A commit resolves once the quorum has
//! committed it (so it survives the coordinator's death); reads come from this node's copy
//! of the state, which on the coordinator includes every commit it acknowledged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::state::{ClusterState, Command, CommitEntry, Outcome};
use crate::log::{
    CommittedOffset, GroupOffsets, OffsetCommit, OffsetStore, Pending, StoreError, TopicPartition,
};

/// Longest a commit waits for the quorum.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ClusterOffsets {
    quorum: runnel_quorum::Quorum,
    state: watch::Receiver<Arc<ClusterState>>,
}

impl ClusterOffsets {
    pub fn new(quorum: runnel_quorum::Quorum, state: watch::Receiver<Arc<ClusterState>>) -> Self {
        ClusterOffsets { quorum, state }
    }

    /// Proposes `cmds` one after the other; the reply is the first failure, or `ok`.
    fn propose<T: Send + 'static>(
        &self,
        cmds: Vec<Command>,
        ok: T,
    ) -> Pending<Result<T, StoreError>> {
        let (tx, rx) = oneshot::channel();
        let quorum = self.quorum.clone();
        tokio::spawn(async move {
            for cmd in cmds {
                let result = match serde_json::to_vec(&cmd) {
                    Ok(bytes) => quorum
                        .propose(bytes, COMMIT_TIMEOUT)
                        .await
                        .map_err(|e| StoreError::Io(format!("metadata quorum: {e}")))
                        .and_then(|reply| {
                            serde_json::from_slice::<Outcome>(&reply)
                                .map_err(|e| StoreError::Io(e.to_string()))
                        }),
                    Err(e) => Err(StoreError::Io(e.to_string())),
                };
                match result {
                    Ok(o) if o.is_ok() => {}
                    Ok(o) => {
                        let _ = tx.send(Err(StoreError::Io(o.message)));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            let _ = tx.send(Ok(ok));
        });
        rx
    }
}

impl OffsetStore for ClusterOffsets {
    fn commit_offsets(&self, commits: Vec<OffsetCommit>) -> Pending<Result<(), StoreError>> {
        let mut by_group: std::collections::BTreeMap<String, Vec<CommitEntry>> =
            std::collections::BTreeMap::new();
        for c in commits {
            by_group.entry(c.group).or_default().push(CommitEntry {
                topic: c.partition.topic,
                partition: c.partition.partition,
                offset: c.offset.offset,
                leader_epoch: c.offset.leader_epoch,
                metadata: c.offset.metadata,
                commit_timestamp_ms: c.offset.commit_timestamp_ms,
            });
        }
        let cmds = by_group
            .into_iter()
            .map(|(group, commits)| Command::CommitOffsets { group, commits })
            .collect();
        self.propose(cmds, ())
    }

    fn fetch_offsets(
        &self,
        group: &str,
        only: Option<&[TopicPartition]>,
    ) -> Result<GroupOffsets, StoreError> {
        let state = self.state.borrow().clone();
        let mut out = GroupOffsets::new();
        for e in state.offsets.get(group).into_iter().flatten() {
            let tp = TopicPartition {
                topic: e.topic.clone(),
                partition: e.partition,
            };
            if only.is_some_and(|o| !o.contains(&tp)) {
                continue;
            }
            out.insert(
                tp,
                CommittedOffset {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata: e.metadata.clone(),
                    commit_timestamp_ms: e.commit_timestamp_ms,
                },
            );
        }
        Ok(out)
    }

    fn delete_offsets(
        &self,
        group: String,
        only: Option<Vec<TopicPartition>>,
    ) -> Pending<Result<usize, StoreError>> {
        let existing = self
            .fetch_offsets(&group, only.as_deref())
            .map(|o| o.len())
            .unwrap_or(0);
        let only = only.map(|o| o.into_iter().map(|tp| (tp.topic, tp.partition)).collect());
        self.propose(vec![Command::DeleteOffsets { group, only }], existing)
    }

    fn offset_groups(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.state.borrow().offsets.keys().cloned().collect())
    }

    fn expire_offsets(
        &self,
        groups: Vec<String>,
        before_ms: i64,
    ) -> Pending<Result<Vec<String>, StoreError>> {
        let state = self.state.borrow().clone();
        // Only a group's coordinator knows whether it has members: it alone expires the
        // group's offsets (the caller passed the groups without members here).
        let me = i32::try_from(self.quorum.id()).unwrap_or(-1);
        let doomed: Vec<String> = groups
            .into_iter()
            .filter(|g| super::coordinator_in(&state, g) == Some(me))
            .filter(|g| {
                state.offsets.get(g).is_some_and(|e| {
                    e.iter()
                        .map(|c| c.commit_timestamp_ms)
                        .max()
                        .is_some_and(|newest| newest < before_ms)
                })
            })
            .collect();
        let cmds = doomed
            .iter()
            .map(|g| Command::DeleteOffsets {
                group: g.clone(),
                only: None,
            })
            .collect();
        self.propose(cmds, doomed)
    }
}
