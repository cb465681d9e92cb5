//! How many records a topic holds, read from its partitions' watermarks (ListOffsets), so a
//! scenario can count arrivals on a broker without consuming them. Used by the bridge
//! scenario (on its broker) and the uplink scenario (on the central broker).

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use runnel_tests::clients;

use super::client::wait_for_topic;
use super::deadline::Deadline;

/// Reads the watermarks of every partition of one topic.
pub struct Watermarks {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl Watermarks {
    /// Waits until `topic` exists with a leader for every partition. The consumer's metadata
    /// requests never create the topic (librdkafka's `allow.auto.create.topics` is off for
    /// consumers), so whoever is expected to create it still does.
    pub fn new(bootstrap: &str, topic: &str, deadline: &Deadline) -> anyhow::Result<Watermarks> {
        let consumer = clients::consumer(bootstrap, &[])?;
        let partitions = wait_for_topic(consumer.client(), topic, deadline)?;
        Ok(Watermarks {
            consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The high watermark of every partition, in partition order.
    pub fn highs(&self) -> anyhow::Result<Vec<i64>> {
        Ok(self.ranges()?.into_iter().map(|(_, high)| high).collect())
    }

    /// Records held, summed over partitions (high minus low watermark).
    pub fn records(&self) -> anyhow::Result<u64> {
        Ok(self
            .ranges()?
            .into_iter()
            .map(|(low, high)| u64::try_from(high - low).unwrap_or(0))
            .sum())
    }

    fn ranges(&self) -> anyhow::Result<Vec<(i64, i64)>> {
        (0..self.partitions)
            .map(|p| clients::watermarks(&self.consumer, &self.topic, p))
            .collect()
    }
}
