//! Bounded decompression of stored record batches.
//!
//! Produce stores batches compressed, as received; only a few read paths (ListOffsets by
//! timestamp) need their records. A 1 MB zstd or gzip batch can expand to gigabytes, so
//! these paths decompress through [`bounded`], which stops at a limit instead of allocating
//! whatever a hostile producer encoded. The codecs are the ones `kafka-protocol` uses, read
//! through `Read::take`; snappy declares its lengths up front, so those are checked before
//! anything is allocated.

use std::io::Read;

use bytes::{Buf, Bytes};
use kafka_protocol::records::Compression;

/// Xerial snappy framing used by the Java client (`snappy-java`).
const SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("records decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("corrupt {codec} data: {reason}")]
    Corrupt { codec: &'static str, reason: String },
}

fn corrupt(codec: &'static str, e: impl std::fmt::Display) -> DecompressError {
    DecompressError::Corrupt {
        codec,
        reason: e.to_string(),
    }
}

/// Decompresses the records section of a batch, failing past `limit` bytes.
pub fn bounded(
    data: &Bytes,
    compression: Compression,
    limit: usize,
) -> Result<Bytes, DecompressError> {
    match compression {
        Compression::None => Ok(data.clone()),
        Compression::Gzip => read_all(flate2::read::GzDecoder::new(&data[..]), "gzip", limit),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(&data[..]).map_err(|e| corrupt("zstd", e))?;
            read_all(decoder, "zstd", limit)
        }
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(&data[..]).map_err(|e| corrupt("lz4", e))?;
            read_all(decoder, "lz4", limit)
        }
        Compression::Snappy => snappy(data, limit),
    }
}

fn read_all(
    reader: impl Read,
    codec: &'static str,
    limit: usize,
) -> Result<Bytes, DecompressError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

fn snappy(data: &Bytes, limit: usize) -> Result<Bytes, DecompressError> {
    let raw = |block: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        let len = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
        if out.len() + len > limit {
            return Err(DecompressError::TooLarge { limit });
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| corrupt("snappy", e))?;
        Ok(())
    };
    let mut out = Vec::new();
    if !data.starts_with(SNAPPY_MAGIC) {
        raw(data, &mut out)?;
        return Ok(Bytes::from(out));
    }
    let mut rest = &data[SNAPPY_MAGIC.len()..];
    while rest.has_remaining() {
        if rest.len() < 4 {
            return Err(corrupt("snappy", "truncated block length"));
        }
        let len = rest.get_u32() as usize;
        let block = rest
            .get(..len)
            .ok_or_else(|| corrupt("snappy", "truncated block"))?;
        raw(block, &mut out)?;
        rest = &rest[len..];
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 8 << 20]).expect("compress");
        let bomb = Bytes::from(enc.finish().expect("finish"));
        assert!(bomb.len() < 64 << 10, "8 MiB of zeros compress small");
        assert!(matches!(
            bounded(&bomb, Compression::Gzip, 1 << 20),
            Err(DecompressError::TooLarge { .. })
        ));
        assert_eq!(
            bounded(&bomb, Compression::Gzip, 8 << 20)
                .expect("fits")
                .len(),
            8 << 20
        );
    }

    #[test]
    fn zstd_and_snappy_round_trip_and_respect_the_limit() {
        let data = vec![7u8; 100_000];
        let z = Bytes::from(zstd::encode_all(&data[..], 3).expect("zstd"));
        assert_eq!(bounded(&z, Compression::Zstd, 200_000).expect("ok"), data);
        assert!(bounded(&z, Compression::Zstd, 1000).is_err());
        let s = Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&data)
                .expect("snappy"),
        );
        assert_eq!(bounded(&s, Compression::Snappy, 200_000).expect("ok"), data);
        assert!(bounded(&s, Compression::Snappy, 1000).is_err());
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
        lz.write_all(&data).expect("write");
        let (lz, done) = lz.finish();
        done.expect("lz4 finish");
        let lz = Bytes::from(lz);
        assert_eq!(bounded(&lz, Compression::Lz4, 200_000).expect("ok"), data);
        assert!(bounded(&lz, Compression::Lz4, 1000).is_err());
    }
}
