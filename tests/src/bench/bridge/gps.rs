//! The bridge scenario's messages: GPS fixes of trucks as JSON, padded to a fixed size so the
//! MB/s of every case mean the same bytes.

use runnel_tests::harness::mqtt::Message;

/// Bytes of every fix (JSON padded to this size).
pub const PAYLOAD_BYTES: usize = 200;

/// `messages` fixes split over `publishers` trucks `t0`, `t1`, …: one batch per truck on
/// `trucks/<id>/gps`, sequence numbers from 0, timestamps `base_ts_ms + seq`.
pub fn batches(publishers: usize, messages: u64, base_ts_ms: i64) -> Vec<Vec<Message>> {
    let publishers = publishers.max(1) as u64;
    (0..publishers)
        .map(|t| {
            let count = messages / publishers + u64::from(t < messages % publishers);
            let topic = format!("trucks/t{t}/gps");
            (0..count)
                .map(|seq| (topic.clone(), payload(t, seq, base_ts_ms + seq as i64)))
                .collect()
        })
        .collect()
}

/// `{"truck":"t3","seq":…,"ts":…,"lat":…,"lon":…,"speed":…,"pad":"xx…"}`, [`PAYLOAD_BYTES`]
/// long (longer only if the numbers alone are).
pub fn payload(truck: u64, seq: u64, ts_ms: i64) -> Vec<u8> {
    // Plausible, varying coordinates around Hamburg.
    let lat = 53.55 + (seq % 1000) as f64 * 0.0001;
    let lon = 9.99 + (seq % 777) as f64 * 0.0001;
    let speed = (seq % 90) as f64 + 0.5;
    let mut json = format!(
        "{{\"truck\":\"t{truck}\",\"seq\":{seq},\"ts\":{ts_ms},\"lat\":{lat:.5},\
         \"lon\":{lon:.5},\"speed\":{speed:.1},\"pad\":\""
    );
    let pad = PAYLOAD_BYTES.saturating_sub(json.len() + 2);
    json.extend(std::iter::repeat_n('x', pad));
    json.push_str("\"}");
    json.into_bytes()
}

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_fix_when_encoding_should_be_json_of_the_payload_size() {
        let payload = payload(3, 123_456, 1_790_000_000_000);
        assert_eq!(payload.len(), PAYLOAD_BYTES);
        let value: serde_json::Value = serde_json::from_slice(&payload).expect("valid JSON");
        assert_eq!(value["truck"], "t3");
        assert_eq!(value["seq"], 123_456);
    }

    #[test]
    fn given_an_uneven_count_when_batching_should_publish_every_message_once() {
        let batches = batches(4, 10, 0);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3, 2, 2]);
        assert_eq!(batches[1][0].0, "trucks/t1/gps");
    }
}
