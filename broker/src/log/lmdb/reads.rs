//! Read paths: fetch ranges and timestamp lookups. Each runs in its own read transaction
//! while holding the resize gate for reading.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::RecordBatchDecoder;

use super::{Shared, keys};
use crate::log::{PartitionId, ReadChunk, Retention, StoreError, TimestampOffset};
use crate::protocol::{batch, decompress};

/// See [`crate::log::LogStore::read`]; with `release`, [`crate::log::LogStore::read_once`].
pub fn read(
    shared: &Shared,
    id: PartitionId,
    offset: i64,
    max_bytes: usize,
    at_least_one: bool,
    release: bool,
) -> Result<ReadChunk, StoreError> {
    let part = shared
        .partition(id)
        .ok_or(StoreError::UnknownPartition(id))?;
    let _gate = shared.read_gate();
    let txn = shared.env.read_txn()?;
    // Read the offsets after opening the transaction: everything below them is committed
    // and therefore visible to it.
    let high_watermark = part.next_offset();
    let log_start = part.log_start();
    if offset < log_start || offset > high_watermark {
        return Err(StoreError::OffsetOutOfRange {
            offset,
            log_start,
            next: high_watermark,
        });
    }
    let mut out = BytesMut::new();
    let mut released = 0usize;
    let mut last_value = None;
    if offset < high_watermark {
        let start = containing_batch(shared, &txn, id, offset)?;
        let end = keys::batch_end(id);
        for entry in shared.dbs.batches.range(&txn, &keys::span(&start, &end))? {
            let (_, value) = entry?;
            let Some(header) = batch::stored_header(value) else {
                return Err(StoreError::Io(format!("corrupt batch in partition {id}")));
            };
            if header.base_offset >= high_watermark {
                break;
            }
            let fits = out.len() + value.len() <= max_bytes;
            let forced = out.is_empty() && at_least_one;
            if !(fits || forced) {
                break;
            }
            out.extend_from_slice(value);
            if release {
                release_pages(value);
                released += value.len();
                last_value = Some(value.as_ptr());
            }
            if !fits {
                break;
            }
        }
    }
    if let Some(inside) = last_value
        && RELEASED_BYTES.fetch_add(released, Ordering::Relaxed) + released >= WHOLE_MAP_EVERY
    {
        RELEASED_BYTES.store(0, Ordering::Relaxed);
        // Still inside the read transaction and holding the resize gate: the map cannot move.
        release_whole_map(inside);
    }
    Ok(ReadChunk {
        records: out.freeze(),
        high_watermark,
        log_start,
    })
}

/// Bytes [`crate::log::LogStore::read_once`] copies between two [`release_whole_map`] calls.
const WHOLE_MAP_EVERY: usize = 32 * 1024 * 1024;
/// Bytes copied by `read_once` since the whole map was last released.
static RELEASED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Drops every page of LMDB's data mapping from this process's resident set. Per-value
/// release ([`release_pages`]) leaves the B-tree pages a long read walks and the neighbours
/// the kernel maps around each fault; over a backlog of gigabytes those add up. The mapping
/// is found in /proc/self/maps as the one containing `inside` (a pointer into a value just
/// read), and only if it is a `data.mdb` file mapping. Other readers' pages fault back in from
/// the page cache (a minor fault each), so this runs only every [`WHOLE_MAP_EVERY`] bytes.
fn release_whole_map(inside: *const u8) {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let at = inside as usize;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        if !(start <= at && at < end) {
            continue;
        }
        // Read-only, shared, and LMDB's data file: nothing else is ever released.
        if perms.starts_with("r--s") && line.trim_end().ends_with("/data.mdb") {
            // SAFETY: [start, end) is exactly the kernel's record of LMDB's read-only shared
            // file mapping (checked above); the caller holds the resize gate, so the mapping
            // cannot be replaced meanwhile; MADV_DONTNEED on it only unmaps page-table entries
            // and every later access refaults the same bytes from the page cache.
            let rc = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if rc != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "madvise(MADV_DONTNEED) of the map failed");
            }
        }
        return;
    }
}

/// Kernel fault-around window (`fault_around_bytes`, 64 KiB by default).
const RELEASE_GRANULE: usize = 64 * 1024;

/// Drops the memory pages holding `value` from this process's resident set. `value` lies in
/// LMDB's read-only shared file mapping (the environment is never opened with WRITE_MAP), so
/// the pages stay in the page cache and the next access — by anyone, including this very
/// read transaction — faults them back in with the same content; nothing is lost or changed.
/// Large batches live in overflow pages of their own; a small batch shares its leaf page,
/// whose other entries then cost one minor fault to touch again.
///
/// The range is widened to [`RELEASE_GRANULE`]: on a fault Linux maps the cached pages around
/// the faulting one too ("fault-around", 64 KiB by default), which would otherwise leave up to
/// 15 already-forwarded neighbours mapped per read.
fn release_pages(value: &[u8]) {
    let page = (super::page_size() as usize).max(RELEASE_GRANULE);
    let start = value.as_ptr() as usize / page * page;
    let end = (value.as_ptr() as usize + value.len()).next_multiple_of(page);
    if end <= start {
        return;
    }
    // SAFETY: [start, end) is page-aligned and covers only pages of the environment's
    // mapping (LMDB maps whole pages, and `value` lies in it; see above); MADV_DONTNEED on a
    // shared read-only file mapping only unmaps our page-table entries.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "madvise(MADV_DONTNEED) failed");
    }
}

/// Key of the batch holding `offset`, or of the first batch after it.
fn containing_batch(
    shared: &Shared,
    txn: &heed::RoTxn<'_, heed::WithoutTls>,
    id: PartitionId,
    offset: i64,
) -> Result<[u8; keys::KEY_LEN], StoreError> {
    let wanted = keys::batch(id, offset);
    if let Some((key, value)) = shared
        .dbs
        .batches
        .get_lower_than_or_equal_to(txn, &wanted)?
        && keys::partition_of(key) == Some(id)
        && batch::stored_header(value).is_some_and(|h| h.last_offset >= offset)
        && let Ok(found) = <[u8; keys::KEY_LEN]>::try_from(key)
    {
        return Ok(found);
    }
    Ok(wanted)
}

/// See [`crate::log::LogStore::offset_for_timestamp`].
pub fn offset_for_timestamp(
    shared: &Shared,
    id: PartitionId,
    timestamp: i64,
) -> Result<Option<TimestampOffset>, StoreError> {
    let part = shared
        .partition(id)
        .ok_or(StoreError::UnknownPartition(id))?;
    let _gate = shared.read_gate();
    let txn = shared.env.read_txn()?;
    let (high_watermark, log_start) = (part.next_offset(), part.log_start());
    let from = keys::time(id, timestamp);
    let end = keys::time_end(id);
    let first_entry = shared
        .dbs
        .time_index
        .range(&txn, &keys::span(&from, &end))?
        .next()
        .transpose()?;
    let Some((_, base)) = first_entry else {
        return Ok(None);
    };
    let base = keys::u64_value(base).ok_or_else(|| StoreError::Io("corrupt time index".into()))?;
    let start = keys::batch(id, base as i64);
    let end = keys::batch_end(id);
    for entry in shared.dbs.batches.range(&txn, &keys::span(&start, &end))? {
        let (_, value) = entry?;
        let header = batch::stored_header(value)
            .ok_or_else(|| StoreError::Io(format!("corrupt batch in partition {id}")))?;
        if header.base_offset >= high_watermark {
            break;
        }
        if header.max_timestamp < timestamp || header.last_offset < log_start {
            continue;
        }
        let found = records(value)?
            .into_iter()
            .find(|&(offset, ts)| ts >= timestamp && offset >= log_start);
        if let Some((offset, ts)) = found {
            return Ok(Some(TimestampOffset {
                timestamp: ts,
                offset,
            }));
        }
    }
    Ok(None)
}

/// See [`crate::log::LogStore::max_timestamp`].
pub fn max_timestamp(
    shared: &Shared,
    id: PartitionId,
) -> Result<Option<TimestampOffset>, StoreError> {
    let part = shared
        .partition(id)
        .ok_or(StoreError::UnknownPartition(id))?;
    let max = part.meta().max_timestamp;
    if max == i64::MIN || part.next_offset() == part.log_start() {
        return Ok(None);
    }
    offset_for_timestamp(shared, id, max)
}

/// Most bytes one stored batch may decompress to when its records are read.
const MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// `(offset, timestamp)` of every record in a stored batch, decompressing within
/// [`MAX_DECOMPRESSED`] (a batch is stored compressed as produced; a hostile one may be a
/// decompression bomb).
fn records(batch: &[u8]) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut buf = Bytes::copy_from_slice(batch);
    let bounded = |data: &mut Bytes, compression| {
        decompress::bounded(data, compression, MAX_DECOMPRESSED).map_err(anyhow::Error::from)
    };
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut buf, Some(bounded))
        .map_err(|e| StoreError::Io(format!("cannot decode stored batch: {e}")))?;
    Ok(set
        .records
        .iter()
        .map(|r| (r.offset, r.timestamp))
        .collect())
}

/// See [`crate::log::LogStore::retention_point`]: walks batches from the log start while
/// each is expired or not needed to keep `max_bytes`.
pub fn retention_point(
    shared: &Shared,
    id: PartitionId,
    policy: Retention,
) -> Result<i64, StoreError> {
    let part = shared
        .partition(id)
        .ok_or(StoreError::UnknownPartition(id))?;
    let _gate = shared.read_gate();
    let txn = shared.env.read_txn()?;
    let (log_start, high_watermark) = (part.log_start(), part.next_offset());
    let mut remaining = part.size_bytes();
    let mut target = log_start;
    let (start, end) = (keys::batch(id, 0), keys::batch_end(id));
    for entry in shared.dbs.batches.range(&txn, &keys::span(&start, &end))? {
        let (_, value) = entry?;
        let header = batch::stored_header(value)
            .ok_or_else(|| StoreError::Io(format!("corrupt batch in partition {id}")))?;
        if header.base_offset >= high_watermark {
            break;
        }
        let len = value.len() as u64;
        let expired = policy
            .before_timestamp
            .is_some_and(|cutoff| header.max_timestamp < cutoff);
        let surplus = policy
            .max_bytes
            .is_some_and(|max| remaining.saturating_sub(len) >= max);
        if !(expired || surplus) {
            break;
        }
        remaining = remaining.saturating_sub(len);
        target = target.max(header.last_offset + 1);
    }
    Ok(target.min(high_watermark))
}
