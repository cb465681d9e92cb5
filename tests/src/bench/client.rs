//! What every bench client shares: base librdkafka settings, surfacing librdkafka's own
//! warnings, and waiting for a topic to exist before a clock starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use anyhow::bail;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use super::deadline::Deadline;

/// librdkafka messages printed per client before the rest are only counted.
const MAX_PRINTED: u64 = 20;

/// Where the clients connect, and the user's librdkafka settings (`--client-config`), which
/// are applied after the bench's own so they can override any of them.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub bootstrap: String,
    pub overrides: Vec<(String, String)>,
}

impl ClientSettings {
    /// Settings common to producers and consumers.
    ///
    /// Nagle is disabled so the latency scenario measures the broker, not the client's socket.
    pub fn base(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "runnel-bench")
            .set("socket.nagle.disable", "true")
            .set_log_level(RDKafkaLogLevel::Warning);
        config
    }

    /// Applies the user's overrides; call last.
    pub fn finish<'c>(&self, config: &'c mut ClientConfig) -> &'c mut ClientConfig {
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }
}

/// Prints librdkafka's warnings and errors (a broker answering badly usually shows up here
/// first) to stderr, up to [`MAX_PRINTED`] per client, skipping immediate repeats.
#[derive(Debug, Default)]
pub struct Diagnostics {
    printed: AtomicU64,
    last: Mutex<String>,
}

impl Diagnostics {
    fn report(&self, what: String) {
        {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if *last == what {
                return;
            }
            last.clone_from(&what);
        }
        let n = self.printed.fetch_add(1, Ordering::Relaxed);
        if n < MAX_PRINTED {
            eprintln!("[librdkafka] {what}");
        } else if n == MAX_PRINTED {
            eprintln!("[librdkafka] (further messages from this client suppressed)");
        }
    }

    /// librdkafka only calls this for the levels [`ClientSettings::base`] enables (warning and worse).
    /// `FAIL` lines are skipped: the same failure also arrives through [`Self::error`].
    /// So are warnings that a `--client-config` setting does not apply to this kind of client.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let ignored_setting = facility == "CONFWARN" && message.contains("will be ignored by");
        if facility != "FAIL" && !ignored_setting {
            self.report(format!("{level:?} {facility}: {message}"));
        }
    }

    pub fn error(&self, error: KafkaError, reason: &str) {
        self.report(format!("error {error}: {reason}"));
    }
}

/// Consumer context: diagnostics only.
#[derive(Debug, Default)]
pub struct ConsumerContextImpl {
    diagnostics: Diagnostics,
}

impl ClientContext for ConsumerContextImpl {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.diagnostics.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.diagnostics.error(error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ConsumerContextImpl {}

/// Asks for the topic's metadata until it exists with a leader for every partition (which,
/// with auto-creation on, also creates it) and returns its partition count.
pub fn wait_for_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    deadline: &Deadline,
) -> anyhow::Result<i32> {
    let mut last_problem = String::from("no answer yet");
    loop {
        deadline.check(|| format!("waiting for topic {topic} to exist ({last_problem})"))?;
        let timeout = deadline.remaining().min(Duration::from_secs(5));
        match client.fetch_metadata(Some(topic), timeout) {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    let leaderless = t.partitions().iter().filter(|p| p.leader() < 0).count();
                    if leaderless == 0 {
                        let count = t.partitions().len();
                        return i32::try_from(count)
                            .or_else(|_| bail!("topic {topic} has {count} partitions"));
                    }
                    last_problem = format!("{leaderless} partitions without a leader");
                }
                Some(t) => {
                    last_problem = format!(
                        "topic error {:?}, {} partitions",
                        t.error(),
                        t.partitions().len()
                    )
                }
                None => last_problem = "topic missing from the metadata response".to_owned(),
            },
            Err(e) => last_problem = format!("metadata request failed: {e}"),
        }
        thread::sleep(Duration::from_millis(100));
    }
}
