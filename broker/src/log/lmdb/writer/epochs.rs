//! Writer steps on the leader-epoch index (see [`crate::log::lmdb::epochs`]) and on the
//! producer states a back truncation cuts into. The latest epoch per partition is cached
//! like producer states: committed values in `Writer::epochs`, the open transaction's in
//! `Writer::dirty_epochs`; every change to the `epochs` database goes with an entry in the
//! latter, so a value read from the database in the open transaction is the committed one.

use std::collections::BTreeSet;

use heed::RwTxn;

use super::{TxnError, Writer};
use crate::log::PartitionId;
use crate::log::lmdb::{epochs, keys};

impl Writer {
    /// The partition's latest recorded epoch as of the open transaction.
    fn latest_epoch(&mut self, txn: &RwTxn<'_>, id: PartitionId) -> Result<Option<i32>, TxnError> {
        if let Some(latest) = self.dirty_epochs.get(&id) {
            return Ok(*latest);
        }
        if let Some(latest) = self.epochs.get(&id) {
            return Ok(*latest);
        }
        let stored = epochs::last(txn, self.shared.dbs.epochs, id)?.map(|e| e.epoch);
        self.epochs.insert(id, stored);
        Ok(stored)
    }

    /// Records that `epoch` starts at `base` if it is newer than the latest recorded epoch.
    pub(super) fn note_epoch(
        &mut self,
        txn: &mut RwTxn<'_>,
        id: PartitionId,
        epoch: i32,
        base: i64,
    ) -> Result<(), TxnError> {
        if epoch < 0
            || self
                .latest_epoch(txn, id)?
                .is_some_and(|latest| epoch <= latest)
        {
            return Ok(());
        }
        self.shared
            .dbs
            .epochs
            .put(txn, &keys::epoch(id, epoch), &(base as u64).to_be_bytes())?;
        self.dirty_epochs.insert(id, Some(epoch));
        Ok(())
    }

    /// Drops the epochs starting at or after `end` (all of them with `end == i64::MIN`).
    pub(super) fn truncate_epochs(
        &mut self,
        txn: &mut RwTxn<'_>,
        id: PartitionId,
        end: i64,
    ) -> Result<(), TxnError> {
        let db = self.shared.dbs.epochs;
        let (start, last) = (keys::epoch(id, 0), keys::epoch_end(id));
        let mut doomed = Vec::new();
        for entry in db.range(txn, &keys::span(&start, &last))? {
            let (key, value) = entry?;
            if keys::u64_value(value).is_none_or(|offset| offset as i64 >= end) {
                doomed.push(key.to_vec());
            }
        }
        for key in &doomed {
            db.delete(txn, key)?;
        }
        let latest = epochs::last(txn, db, id)?.map(|e| e.epoch);
        self.dirty_epochs.insert(id, latest);
        Ok(())
    }

    /// Ids of the producers with state on the partition as of the open transaction.
    fn producer_ids(&self, txn: &RwTxn<'_>, id: PartitionId) -> Result<BTreeSet<i64>, TxnError> {
        let mut ids: BTreeSet<i64> = self
            .dirty_producers
            .iter()
            .filter(|((p, _), state)| *p == id && state.is_some())
            .map(|((_, pid), _)| *pid)
            .collect();
        let (start, end) = (keys::producer(id, 0), keys::producer_end(id));
        for entry in self
            .shared
            .dbs
            .producers
            .range(txn, &keys::span(&start, &end))?
        {
            if let Some(pid) = keys::suffix_of(entry?.0) {
                ids.insert(pid as i64);
            }
        }
        Ok(ids)
    }

    /// Forgets the producers' batches at offsets >= `end`; a producer left with none goes
    /// (all of them with `end == i64::MIN`).
    pub(super) fn truncate_producers(
        &mut self,
        txn: &RwTxn<'_>,
        id: PartitionId,
        end: i64,
    ) -> Result<(), TxnError> {
        for pid in self.producer_ids(txn, id)? {
            let key = (id, pid);
            let Some(mut state) = self.producer_state(txn, key)? else {
                continue;
            };
            let before = state.batches.len();
            state.batches.retain(|b| b.base_offset < end);
            if state.batches.is_empty() {
                self.dirty_producers.insert(key, None);
            } else if state.batches.len() != before {
                self.dirty_producers.insert(key, Some(state));
            }
        }
        Ok(())
    }
}
