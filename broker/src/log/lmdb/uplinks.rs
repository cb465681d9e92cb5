//! The `uplinks` database: `partition prefix | uplink name` → [`UplinkProgress`]. Keyed by
//! partition first so a deleted topic's entries are one key range per partition.

use heed::{RoTxn, RwTxn, WithoutTls};

use super::{Db, keys};
use crate::log::{PartitionId, ProgressEntry, StoreError, UplinkProgress};

fn key(id: PartitionId, uplink: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(keys::PREFIX_LEN + uplink.len());
    k.extend_from_slice(&keys::prefix(id));
    k.extend_from_slice(uplink.as_bytes());
    k
}

/// Every entry of `uplink` (a full scan: there are few partitions per uplink).
pub fn load(
    txn: &RoTxn<'_, WithoutTls>,
    db: Db,
    uplink: &str,
) -> Result<Vec<(PartitionId, UplinkProgress)>, StoreError> {
    let mut out = Vec::new();
    for entry in db.iter(txn)? {
        let (k, v) = entry?;
        if k.get(keys::PREFIX_LEN..) != Some(uplink.as_bytes()) {
            continue;
        }
        let (Some(id), Some(progress)) = (keys::partition_of(k), UplinkProgress::decode(v)) else {
            return Err(StoreError::Io("corrupt uplink progress record".into()));
        };
        out.push((id, progress));
    }
    Ok(out)
}

pub fn save(txn: &mut RwTxn<'_>, db: Db, entries: &[ProgressEntry]) -> Result<(), heed::Error> {
    for e in entries {
        db.put(txn, &key(e.partition, &e.uplink), &e.progress.encode())?;
    }
    Ok(())
}

/// Deletes every uplink's entry of the partition.
pub fn delete_partition(txn: &mut RwTxn<'_>, db: Db, id: PartitionId) -> Result<(), heed::Error> {
    let prefix = keys::prefix(id);
    let mut doomed = Vec::new();
    for entry in db.prefix_iter(txn, &prefix)? {
        doomed.push(entry?.0.to_vec());
    }
    for key in &doomed {
        db.delete(txn, key)?;
    }
    Ok(())
}
