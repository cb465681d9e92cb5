//! Records as the client's users see them, and their RecordBatch v2 encoding and decoding
//! (both done by `kafka-protocol`).
//!
//! Encoding sets `sequence = base_sequence + offset_delta` on every record: the crate starts a
//! new batch whenever `offset - sequence` changes, so anything else yields one batch per record.
//! Decoding skips a trailing partial batch (brokers may cut a fetch inside one) and control
//! records, and drops records below the requested offset (a fetch returns whole batches).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType,
};

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The producer identity stamped on a batch (`-1`s for a non-idempotent producer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchIdentity {
    pub const NONE: BatchIdentity = BatchIdentity {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// Encodes `records` as one RecordBatch v2.
pub fn encode_batch(
    records: &[OutRecord],
    identity: BatchIdentity,
    compression: Compression,
) -> Result<Bytes, String> {
    let wire: Vec<WireRecord> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let delta = i as i32;
            WireRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: identity.producer_id,
                producer_epoch: identity.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i64::from(delta),
                // Also for base −1 (no producer id): the crate takes the batch's base sequence
                // from the first record and splits wherever `offset − sequence` changes.
                sequence: identity.base_sequence.wrapping_add(delta),
                timestamp: r.timestamp_ms,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                    .collect::<IndexMap<_, _>>(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        wire.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Decodes the batches of a fetch response from `from_offset` on.
pub fn decode_batches(mut data: Bytes, from_offset: i64) -> Result<Vec<InRecord>, String> {
    let mut out = Vec::new();
    while data.len() >= 12 {
        let batch_len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let total = usize::try_from(batch_len).map_err(|_| "negative batch length")? + 12;
        if total > data.len() {
            break; // a partial batch at the end of a fetch
        }
        let mut batch = data.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| e.to_string())?;
        out.extend(
            set.records
                .into_iter()
                .filter(|r| !r.control && r.offset >= from_offset)
                .map(|r| InRecord {
                    offset: r.offset,
                    timestamp_ms: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                }),
        );
    }
    data.advance(data.len());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> OutRecord {
        OutRecord {
            key: Some(Bytes::from(vec![b'k', i])),
            value: Some(Bytes::from(vec![i; 10])),
            headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
            timestamp_ms: 1_700_000_000_000 + i64::from(i),
        }
    }

    #[test]
    fn given_records_when_encoding_with_a_sequence_should_make_one_batch_that_decodes_back() {
        let records: Vec<_> = (0..5).map(record).collect();
        let identity = BatchIdentity {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 10,
        };
        let bytes = encode_batch(&records, identity, Compression::None).expect("encodes");
        let batch_len = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        assert_eq!(batch_len as usize + 12, bytes.len(), "exactly one batch");
        let back = decode_batches(bytes, 2).expect("decodes");
        assert_eq!(back.len(), 3, "offsets below 2 are skipped");
        assert_eq!(back[0].offset, 2);
        assert_eq!(back[0].key, records[2].key);
        assert_eq!(back[2].value, records[4].value);
        assert_eq!(back[1].headers, records[3].headers);
        assert_eq!(back[1].timestamp_ms, records[3].timestamp_ms);
    }

    #[test]
    fn given_records_without_a_producer_id_when_encoding_should_make_one_batch_with_no_sequence() {
        let records: Vec<_> = (0..4).map(record).collect();
        let bytes =
            encode_batch(&records, BatchIdentity::NONE, Compression::None).expect("encodes");
        let batch_len = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        assert_eq!(batch_len as usize + 12, bytes.len(), "exactly one batch");
        // baseSequence sits after baseOffset(8) length(4) epoch(4) magic(1) crc(4) attributes(2)
        // lastOffsetDelta(4) baseTimestamp(8) maxTimestamp(8) producerId(8) producerEpoch(2).
        let at = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2;
        let base_sequence =
            i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        assert_eq!(base_sequence, -1);
        assert_eq!(decode_batches(bytes, 0).expect("decodes").len(), 4);
    }

    #[test]
    fn given_a_truncated_trailing_batch_when_decoding_should_return_the_whole_ones() {
        let a = encode_batch(&[record(1)], BatchIdentity::NONE, Compression::None).expect("a");
        let b = encode_batch(&[record(2)], BatchIdentity::NONE, Compression::None).expect("b");
        let mut both = BytesMut::from(&a[..]);
        both.extend_from_slice(&b[..b.len() - 3]);
        let back = decode_batches(both.freeze(), 0).expect("decodes");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, record(1).key);
    }
}
