//! This node's view of the partitions it replicates: its role (leader or follower, and the
//! leader epoch), the ISR as last committed, and on a leader each follower's log end offset
//! and when it last caught up — from which the high watermark follows.
//!
//! Invariants:
//! - a leader's high watermark never decreases while it leads the same epoch, and is the
//!   smallest log end offset among the ISR members (its own included);
//! - a follower's high watermark is what its leader last said, capped at its own log end;
//! - every change of a high watermark or a role bumps [`ReplicaManager::changes`], which
//!   acks=all producers and long-polling consumers wait on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::state::ClusterState;
use crate::log::{PartitionId, PartitionLog};
use crate::topics::TopicRegistry;

/// What this node is for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower { leader: i32 },
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's log end offset (its last fetch offset); -1 until it fetched.
    leo: i64,
    caught_up_at: Instant,
}

#[derive(Debug)]
struct Inner {
    role: Role,
    leader_epoch: i32,
    isr: Vec<i32>,
    replicas: Vec<i32>,
    followers: HashMap<i32, Progress>,
    /// An ISR change of ours is in flight through the controller.
    isr_change_pending: bool,
}

/// One replicated partition on this node.
#[derive(Debug)]
pub struct Replica {
    pub topic: String,
    pub index: i32,
    pub log: Arc<PartitionLog>,
    hw: AtomicI64,
    inner: Mutex<Inner>,
}

/// An ISR change the leader wants the controller to make.
#[derive(Debug, Clone)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

impl Replica {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn high_watermark(&self) -> i64 {
        self.hw.load(Ordering::Acquire).min(self.log.next_offset())
    }

    pub fn role(&self) -> (Role, i32) {
        let inner = self.lock();
        (inner.role, inner.leader_epoch)
    }

    pub fn isr_len(&self) -> usize {
        self.lock().isr.len()
    }

    /// The replication factor (replicas being removed by a reassignment included).
    pub fn replica_count(&self) -> usize {
        self.lock().replicas.len()
    }

    /// Recomputes a leader's high watermark; true if it moved.
    fn advance(&self, inner: &Inner, me: i32) -> bool {
        if inner.role != Role::Leader {
            return false;
        }
        let mut hw = self.log.next_offset();
        for r in &inner.isr {
            if *r == me {
                continue;
            }
            match inner.followers.get(r) {
                Some(p) if p.leo >= 0 => hw = hw.min(p.leo),
                _ => return false,
            }
        }
        let old = self.hw.load(Ordering::Acquire);
        if hw > old {
            self.hw.store(hw, Ordering::Release);
            return true;
        }
        false
    }

    /// Releases the "change in flight" mark after the controller answered.
    pub fn isr_change_done(&self) {
        self.lock().isr_change_pending = false;
    }
}

/// All replicas of this node.
pub struct ReplicaManager {
    node_id: i32,
    lag_max: Duration,
    parts: RwLock<HashMap<PartitionId, Arc<Replica>>>,
    changes: watch::Sender<u64>,
}

impl ReplicaManager {
    pub fn new(node_id: i32, lag_max: Duration) -> Self {
        ReplicaManager {
            node_id,
            lag_max,
            parts: RwLock::new(HashMap::new()),
            changes: watch::channel(0).0,
        }
    }

    /// Bumped on every high-watermark or role change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn get(&self, id: PartitionId) -> Option<Arc<Replica>> {
        self.parts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every replica this node holds.
    pub fn all(&self) -> Vec<Arc<Replica>> {
        self.parts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Takes roles, epochs and ISRs from the committed state; returns the partitions this
    /// node newly follows or whose leader changed (the fetcher re-plans on every call anyway).
    pub fn update(&self, state: &ClusterState, topics: &TopicRegistry) {
        let me = self.node_id;
        let mut next = HashMap::new();
        let old = self.parts.read().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, t) in &state.topics {
            let Some(local) = topics.get(name) else {
                continue;
            };
            if local.id() != t.id {
                continue;
            }
            for (i, p) in t.partitions.iter().enumerate() {
                if !p.replicas.contains(&me) || p.leader < 0 {
                    continue;
                }
                let Some(log) = local.partitions.get(i) else {
                    continue;
                };
                let role = if p.leader == me {
                    Role::Leader
                } else {
                    Role::Follower { leader: p.leader }
                };
                let replica = match old.get(&log.id) {
                    Some(r) => r.clone(),
                    None => Arc::new(Replica {
                        topic: name.clone(),
                        index: i as i32,
                        log: log.clone(),
                        hw: AtomicI64::new(0),
                        inner: Mutex::new(Inner {
                            role,
                            leader_epoch: -1,
                            isr: Vec::new(),
                            replicas: Vec::new(),
                            followers: HashMap::new(),
                            isr_change_pending: false,
                        }),
                    }),
                };
                {
                    let mut inner = replica.lock();
                    let new_term = inner.role != role || inner.leader_epoch != p.leader_epoch;
                    if new_term && role == Role::Leader {
                        let now = Instant::now();
                        inner.followers = p
                            .replicas
                            .iter()
                            .filter(|r| **r != me)
                            .map(|r| {
                                (
                                    *r,
                                    Progress {
                                        leo: -1,
                                        caught_up_at: now,
                                    },
                                )
                            })
                            .collect();
                        tracing::info!(topic = %name, partition = i, leader_epoch = p.leader_epoch, isr = ?p.isr, "leading partition");
                    }
                    inner.role = role;
                    inner.leader_epoch = p.leader_epoch;
                    inner.isr = p.isr.clone();
                    inner.replicas = p.replicas.clone();
                    inner.isr_change_pending = false;
                    for r in &p.replicas {
                        if *r != me && !inner.followers.contains_key(r) {
                            inner.followers.insert(
                                *r,
                                Progress {
                                    leo: -1,
                                    caught_up_at: Instant::now(),
                                },
                            );
                        }
                    }
                    replica.advance(&inner, me);
                }
                next.insert(log.id, replica);
            }
        }
        *self.parts.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.bump();
    }

    /// A leader appended locally: with a lone ISR the high watermark moves at once.
    pub fn appended(&self, replica: &Replica) {
        let inner = replica.lock();
        if replica.advance(&inner, self.node_id) {
            drop(inner);
            self.bump();
        }
    }

    /// A follower fetched at `offset` (its log end). Returns an ISR expansion to propose
    /// when it caught up and is not in the ISR yet.
    pub fn follower_fetched(
        &self,
        replica: &Replica,
        follower: i32,
        offset: i64,
    ) -> Option<IsrChange> {
        let mut inner = replica.lock();
        if inner.role != Role::Leader || !inner.replicas.contains(&follower) {
            return None;
        }
        let leo = replica.log.next_offset();
        let now = Instant::now();
        let entry = inner.followers.entry(follower).or_insert(Progress {
            leo: -1,
            caught_up_at: now,
        });
        entry.leo = offset;
        if offset >= leo {
            entry.caught_up_at = now;
        }
        let moved = replica.advance(&inner, self.node_id);
        let hw = replica.hw.load(Ordering::Acquire);
        let expand = (!inner.isr.contains(&follower) && offset >= hw && !inner.isr_change_pending)
            .then(|| {
                inner.isr_change_pending = true;
                let mut isr = inner.isr.clone();
                isr.push(follower);
                IsrChange {
                    topic: replica.topic.clone(),
                    partition: replica.index,
                    leader_epoch: inner.leader_epoch,
                    isr,
                }
            });
        drop(inner);
        if moved {
            self.bump();
        }
        expand
    }

    /// A follower learned its leader's high watermark.
    pub fn follower_hw(&self, replica: &Replica, hw: i64) {
        let capped = hw.min(replica.log.next_offset());
        if replica.hw.swap(capped, Ordering::AcqRel) != capped {
            self.bump();
        }
    }

    /// ISR shrinks a leader wants: followers that have not caught up for `lag_max`.
    pub fn laggards(&self) -> Vec<(Arc<Replica>, IsrChange)> {
        let now = Instant::now();
        let mut out = Vec::new();
        for replica in self.all() {
            let mut inner = replica.lock();
            if inner.role != Role::Leader || inner.isr_change_pending {
                continue;
            }
            let leo = replica.log.next_offset();
            let isr: Vec<i32> = inner
                .isr
                .iter()
                .copied()
                .filter(|r| {
                    *r == self.node_id
                        || inner.followers.get(r).is_some_and(|p| {
                            p.leo >= leo || now.duration_since(p.caught_up_at) < self.lag_max
                        })
                })
                .collect();
            if isr.len() < inner.isr.len() {
                inner.isr_change_pending = true;
                let change = IsrChange {
                    topic: replica.topic.clone(),
                    partition: replica.index,
                    leader_epoch: inner.leader_epoch,
                    isr,
                };
                drop(inner);
                out.push((replica, change));
            }
        }
        out
    }
}
