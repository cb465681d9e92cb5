//! RecordBatch v2 headers: validation of what producers send and the few header fields the
//! log needs. Batches are stored exactly as received; only `baseOffset` and
//! `partitionLeaderEpoch` are patched, which the CRC32C does not cover, so the CRC stays valid.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23,
//! baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51,
//! baseSequence i32 @53, recordCount i32 @57, records @61.

use bytes::{Bytes, BytesMut};

pub const HEADER_LEN: usize = 61;
const LENGTH_FIELD_END: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

/// Why a produced batch is refused. Each maps to the Kafka error code clients expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch is {0} bytes, shorter than a v2 batch header")]
    TooShort(usize),
    #[error("batchLength {declared} does not match the {actual} bytes sent")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("only one record batch per partition is accepted, got trailing bytes")]
    TrailingData,
    #[error("unsupported message format (magic {0}); only RecordBatch v2 is accepted")]
    Magic(i8),
    #[error("CRC32C mismatch: batch says {expected:#010x}, computed {actual:#010x}")]
    Crc { expected: u32, actual: u32 },
    #[error("record count {count} does not match lastOffsetDelta {last_offset_delta}")]
    Count { count: i32, last_offset_delta: i32 },
    #[error("transactional batches are not supported")]
    Transactional,
    #[error("control batches may not be produced by clients")]
    Control,
}

/// A batch that passed validation, with the header facts the log indexes.
#[derive(Debug, Clone)]
pub struct ValidBatch {
    pub bytes: Bytes,
    pub record_count: i32,
    pub max_timestamp: i64,
    /// Idempotence facts; `producer_id` is -1 for a plain batch.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Checks one produced RecordBatch v2: framing, magic, CRC32C over attributes..end, and that
/// the record count agrees with the offset deltas (what offset assignment relies on).
pub fn validate(bytes: Bytes) -> Result<ValidBatch, BatchError> {
    let b = &bytes[..];
    if b.len() < HEADER_LEN {
        return Err(BatchError::TooShort(b.len()));
    }
    let magic = b[MAGIC] as i8;
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    let declared = i64::from(i32_at(b, 8)) + LENGTH_FIELD_END as i64;
    if declared != b.len() as i64 {
        return Err(
            if declared < b.len() as i64 && declared >= HEADER_LEN as i64 {
                BatchError::TrailingData
            } else {
                BatchError::LengthMismatch {
                    declared,
                    actual: b.len(),
                }
            },
        );
    }
    let expected = u32::from_be_bytes([b[CRC], b[CRC + 1], b[CRC + 2], b[CRC + 3]]);
    let actual = crc32c::crc32c(&b[ATTRIBUTES..]);
    if expected != actual {
        return Err(BatchError::Crc { expected, actual });
    }
    let attributes = i16::from_be_bytes([b[ATTRIBUTES], b[ATTRIBUTES + 1]]);
    if attributes & 0x10 != 0 {
        return Err(BatchError::Transactional);
    }
    if attributes & 0x20 != 0 {
        return Err(BatchError::Control);
    }
    let count = i32_at(b, RECORD_COUNT);
    let last_offset_delta = i32_at(b, LAST_OFFSET_DELTA);
    if count < 1 || last_offset_delta != count - 1 {
        return Err(BatchError::Count {
            count,
            last_offset_delta,
        });
    }
    let max_timestamp = i64_at(b, MAX_TIMESTAMP).max(i64_at(b, BASE_TIMESTAMP));
    let producer_id = i64_at(b, PRODUCER_ID);
    let producer_epoch = i16::from_be_bytes([b[PRODUCER_EPOCH], b[PRODUCER_EPOCH + 1]]);
    let base_sequence = i32_at(b, BASE_SEQUENCE);
    Ok(ValidBatch {
        bytes,
        record_count: count,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
    })
}

/// Returns a copy of `batch` with `baseOffset` and `partitionLeaderEpoch` set.
pub fn with_offset(batch: &[u8], base_offset: i64, leader_epoch: i32) -> BytesMut {
    let mut out = BytesMut::from(batch);
    out[0..8].copy_from_slice(&base_offset.to_be_bytes());
    out[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    out
}

/// The `partitionLeaderEpoch` of a batch; `None` if the bytes are too short to be one.
pub fn leader_epoch(b: &[u8]) -> Option<i32> {
    (b.len() >= HEADER_LEN).then(|| i32_at(b, 12))
}

/// Splits whole batches laid back to back, as a Fetch response carries them. A trailing
/// partial batch (a fetch cut at its byte limit) is left out. A length field too small for a
/// batch header ends the split with the rest as one last "batch", which [`validate`] refuses.
pub fn split(records: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while records.len() - at >= LENGTH_FIELD_END {
        let declared = i64::from(i32_at(records, at + 8)) + LENGTH_FIELD_END as i64;
        if declared < HEADER_LEN as i64 {
            out.push(records.slice(at..));
            break;
        }
        let Some(end) = usize::try_from(declared)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|end| *end <= records.len())
        else {
            break;
        };
        out.push(records.slice(at..end));
        at = end;
    }
    out
}

/// Header facts of a stored batch (one that passed [`validate`] before it was stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHeader {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

/// Reads the header of a stored batch; `None` if the bytes are too short to be one.
pub fn stored_header(b: &[u8]) -> Option<StoredHeader> {
    if b.len() < HEADER_LEN {
        return None;
    }
    let base_offset = i64_at(b, 0);
    Some(StoredHeader {
        base_offset,
        last_offset: base_offset + i64::from(i32_at(b, LAST_OFFSET_DELTA)),
        max_timestamp: i64_at(b, MAX_TIMESTAMP).max(i64_at(b, BASE_TIMESTAMP)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// Encodes `n` records with the crate's encoder (timestamps `ts0, ts0+1, …`).
    pub(crate) fn encode(n: i32, ts0: i64, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(i),
                sequence: i,
                timestamp: ts0 + i64::from(i),
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
        buf.freeze()
    }

    #[test]
    fn valid_batch_passes_and_reports_header_facts() {
        let b = validate(encode(5, 1000, Compression::None)).expect("valid");
        assert_eq!(b.record_count, 5);
        assert_eq!(b.max_timestamp, 1004);
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let mut raw = BytesMut::from(&encode(3, 0, Compression::Gzip)[..]);
        let last = raw.len() - 1;
        raw[last] ^= 0xff;
        assert!(matches!(
            validate(raw.freeze()),
            Err(BatchError::Crc { .. })
        ));
    }

    #[test]
    fn truncated_and_trailing_bytes_are_refused() {
        let raw = encode(3, 0, Compression::None);
        assert!(validate(raw.slice(..raw.len() - 1)).is_err());
        let mut two = BytesMut::from(&raw[..]);
        two.extend_from_slice(&raw);
        assert_eq!(validate(two.freeze()).err(), Some(BatchError::TrailingData));
        assert!(matches!(
            validate(raw.slice(..10)),
            Err(BatchError::TooShort(10))
        ));
    }

    #[test]
    fn split_yields_whole_batches_and_drops_a_trailing_partial_one() {
        let a = with_offset(&encode(2, 0, Compression::None), 0, 3).freeze();
        let b = with_offset(&encode(3, 0, Compression::None), 2, 4).freeze();
        let mut all = BytesMut::from(&a[..]);
        all.extend_from_slice(&b);
        all.extend_from_slice(&a[..a.len() - 1]);
        let parts = split(&all.freeze());
        assert_eq!(parts, vec![a.clone(), b]);
        assert_eq!(leader_epoch(&parts[1]), Some(4));
        assert!(split(&a.slice(..11)).is_empty());
        let mut bad = BytesMut::from(&a[..]);
        bad[8..12].copy_from_slice(&5i32.to_be_bytes());
        assert_eq!(
            split(&bad.freeze()).len(),
            1,
            "garbage is handed on to be refused"
        );
    }

    #[test]
    fn patching_offset_keeps_crc_valid() {
        let raw = encode(2, 0, Compression::Lz4);
        let patched = with_offset(&raw, 4242, 7).freeze();
        let b = validate(patched.clone()).expect("still valid");
        let h = stored_header(&b.bytes).expect("header");
        assert_eq!((h.base_offset, h.last_offset), (4242, 4243));
    }
}
