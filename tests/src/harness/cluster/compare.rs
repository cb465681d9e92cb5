//! [`Cluster::compare_replicas`]: reads every replica's copy of a topic by moving leadership
//! around, and checks that the copies are identical.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use super::{Cluster, SETTLE};

use crate::harness::clients;

impl Cluster {
    /// Compares every replica's copy of `topic` (partitions `0..partitions`, which must be
    /// quiet: nothing produced while this runs).
    ///
    /// Only a partition's leader serves reads, so each node's copy is read while that node
    /// leads: read every partition from its current leader (the whole log up to the high
    /// watermark, checking the leader did not change meanwhile), remember which node's copy
    /// was read, then gracefully stop the leader of a partition that still has unread
    /// replicas, wait for a new leader, restart the stopped node and wait for a full ISR
    /// again; repeat until every replica's copy of every partition has been read (at most
    /// `6 × nodes` rounds). The copies must be identical record for record (offset, key,
    /// value); so are their high watermarks. A replica whose log diverged shows as soon as
    /// it leads. Requires a full ISR on entry; leaves the cluster with one.
    pub fn compare_replicas(&mut self, topic: &str, partitions: i32) -> Result<()> {
        type Copy = Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)>;
        let mut reference: BTreeMap<i32, (i32, Copy)> = BTreeMap::new();
        let mut read: BTreeSet<(i32, i32)> = BTreeSet::new();
        let mut wanted: BTreeSet<(i32, i32)> = BTreeSet::new();
        self.wait_for_full_isr_all(topic, partitions)?;
        for partition in 0..partitions {
            for replica in self.partition_state(topic, partition)?.replicas {
                wanted.insert((partition, replica));
            }
        }
        let max_rounds = 6 * self.nodes.len();
        for round in 0..=max_rounds {
            let leaders: BTreeMap<i32, i32> = (0..partitions)
                .map(|p| Ok((p, self.wait_for_leader(topic, p)?)))
                .collect::<Result<_>>()?;
            let records = clients::consume_all(&self.bootstrap(), topic, SETTLE)?;
            let after: BTreeMap<i32, i32> = (0..partitions)
                .map(|p| Ok((p, self.wait_for_leader(topic, p)?)))
                .collect::<Result<_>>()?;
            if after != leaders {
                continue;
            }
            for (partition, leader) in &leaders {
                let copy: Copy = records
                    .iter()
                    .filter(|r| r.partition == *partition)
                    .map(|r| (r.offset, r.key.clone(), r.value.clone()))
                    .collect();
                match reference.get(partition) {
                    None => {
                        reference.insert(*partition, (*leader, copy));
                    }
                    Some((first, expected)) => {
                        if *expected != copy {
                            let diverged = expected
                                .iter()
                                .zip(&copy)
                                .find(|(a, b)| a != b)
                                .map(|(a, b)| format!("{a:?} vs {b:?}"))
                                .unwrap_or_else(|| "one is a prefix of the other".into());
                            bail!(
                                "{topic}/{partition}: node {leader}'s copy ({} records, ends at \
                                 {:?}) differs from node {first}'s ({} records, ends at {:?}); \
                                 first difference: {diverged}\n{}",
                                copy.len(),
                                copy.last().map(|r| r.0),
                                expected.len(),
                                expected.last().map(|r| r.0),
                                self.log_paths()
                            );
                        }
                    }
                }
                read.insert((*partition, *leader));
            }
            let unread: Vec<(i32, i32)> = wanted.difference(&read).copied().collect();
            let Some(&(partition, _)) = unread.first() else {
                eprintln!(
                    "compare_replicas({topic}): {} copies identical after {round} leader moves",
                    read.len()
                );
                return Ok(());
            };
            if round == max_rounds {
                break;
            }
            let leader = leaders[&partition];
            let index = self.index_of(leader)?;
            self.nodes[index].stop()?;
            for p in 0..partitions {
                self.wait_for_leader(topic, p)?;
            }
            self.nodes[index].restart()?;
            self.wait_for_full_isr_all(topic, partitions)?;
        }
        bail!(
            "compare_replicas({topic}): copies read {read:?}, wanted {wanted:?}, after \
             {max_rounds} leader moves (all that were read are identical)"
        )
    }
}
