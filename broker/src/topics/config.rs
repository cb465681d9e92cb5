//! Topic configs: the ones Runnel implements (settable per topic), the ones it reports
//! read-only with their fixed value, and parsing of overrides over the broker defaults.
//!
//! A Kafka config Runnel does not implement is never silently accepted: setting it is
//! INVALID_CONFIG naming the key, and describing it shows the value Runnel behaves with.

use std::collections::BTreeMap;

use crate::config::TopicDefaults;

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const CLEANUP_POLICY: &str = "cleanup.policy";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// Kafka topic configs Runnel reports but does not let clients change, with the value it
/// behaves with.
pub const READ_ONLY: &[(&str, &str)] = &[
    ("compression.type", "producer"),
    ("delete.retention.ms", "86400000"),
    ("file.delete.delay.ms", "60000"),
    ("flush.messages", "9223372036854775807"),
    ("flush.ms", "9223372036854775807"),
    ("follower.replication.throttled.replicas", ""),
    ("index.interval.bytes", "4096"),
    ("leader.replication.throttled.replicas", ""),
    ("local.retention.bytes", "-2"),
    ("local.retention.ms", "-2"),
    ("max.compaction.lag.ms", "9223372036854775807"),
    ("message.downconversion.enable", "false"),
    ("message.timestamp.after.max.ms", "9223372036854775807"),
    ("message.timestamp.before.max.ms", "9223372036854775807"),
    ("message.timestamp.type", "CreateTime"),
    ("min.cleanable.dirty.ratio", "0.5"),
    ("min.compaction.lag.ms", "0"),
    ("preallocate", "false"),
    ("remote.storage.enable", "false"),
    ("segment.bytes", "1073741824"),
    ("segment.index.bytes", "10485760"),
    ("segment.jitter.ms", "0"),
    ("segment.ms", "604800000"),
    ("unclean.leader.election.enable", "false"),
];

/// Whether `key` is a topic config Runnel knows (settable or read-only).
pub fn is_known(key: &str) -> bool {
    [
        RETENTION_MS,
        RETENTION_BYTES,
        MAX_MESSAGE_BYTES,
        CLEANUP_POLICY,
        MIN_INSYNC_REPLICAS,
    ]
    .contains(&key)
        || READ_ONLY.iter().any(|(k, _)| *k == key)
}

/// Effective settings of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub max_message_bytes: i32,
    /// acks=all produce needs at least this many in-sync replicas (cluster mode).
    pub min_insync_replicas: i32,
    /// Explicit overrides, as given by clients (describe shows them as topic-level).
    pub overrides: BTreeMap<String, String>,
}

/// Kafka's `config_type` codes used by DescribeConfigs v3+.
#[derive(Debug, Clone, Copy)]
pub enum ConfigType {
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
    Boolean = 1,
}

/// One described config.
#[derive(Debug, Clone)]
pub struct Described {
    pub name: String,
    pub value: String,
    pub read_only: bool,
    pub is_default: bool,
    pub config_type: ConfigType,
    pub doc: &'static str,
}

impl TopicConfig {
    /// Builds the effective config; errors name the key and the reason.
    pub fn new(
        defaults: &TopicDefaults,
        overrides: BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let mut c = TopicConfig::from_defaults(defaults);
        for (key, value) in &overrides {
            c.set(key, value)?;
        }
        c.overrides = overrides;
        Ok(c)
    }

    /// The config of a topic without overrides.
    pub fn from_defaults(defaults: &TopicDefaults) -> Self {
        TopicConfig {
            retention_ms: defaults.retention_ms,
            retention_bytes: defaults.retention_bytes,
            max_message_bytes: defaults.max_message_bytes,
            min_insync_replicas: defaults.min_insync_replicas,
            overrides: BTreeMap::new(),
        }
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v = value.trim();
        match key {
            RETENTION_MS => self.retention_ms = parse_at_least(key, v, -1)?,
            RETENTION_BYTES => self.retention_bytes = parse_at_least(key, v, -1)?,
            MAX_MESSAGE_BYTES => {
                let n = parse_at_least(key, v, 64)?;
                self.max_message_bytes = i32::try_from(n)
                    .map_err(|_| format!("{key}: {v} is larger than {}", i32::MAX))?;
            }
            MIN_INSYNC_REPLICAS => {
                let n = parse_at_least(key, v, 1)?;
                self.min_insync_replicas = i32::try_from(n)
                    .map_err(|_| format!("{key}: {v} is larger than {}", i32::MAX))?;
            }
            CLEANUP_POLICY => {
                if v != "delete" {
                    return Err(format!(
                        "{key}: only \"delete\" is supported (log compaction is not implemented), got {v:?}"
                    ));
                }
            }
            _ => match READ_ONLY.iter().find(|(k, _)| *k == key) {
                // Setting the value Runnel behaves with anyway is harmless (tools that copy
                // a topic's full config do it).
                Some((_, fixed)) if *fixed == v => {}
                Some((_, fixed)) => {
                    return Err(format!("{key} is read-only in Runnel (always {fixed:?})"));
                }
                None => return Err(format!("unknown or unsupported topic config {key:?}")),
            },
        }
        Ok(())
    }

    /// Every config, with its effective value.
    pub fn describe(&self) -> Vec<Described> {
        let overridden = |k: &str| self.overrides.contains_key(k);
        let mut out = vec![
            Described {
                name: MIN_INSYNC_REPLICAS.into(),
                value: self.min_insync_replicas.to_string(),
                read_only: false,
                is_default: !overridden(MIN_INSYNC_REPLICAS),
                config_type: ConfigType::Int,
                doc: "With acks=all, the fewest in-sync replicas a write needs (cluster mode).",
            },
            Described {
                name: CLEANUP_POLICY.into(),
                value: "delete".into(),
                read_only: false,
                is_default: !overridden(CLEANUP_POLICY),
                config_type: ConfigType::List,
                doc: "Only delete is supported: old data is removed by retention.",
            },
            Described {
                name: MAX_MESSAGE_BYTES.into(),
                value: self.max_message_bytes.to_string(),
                read_only: false,
                is_default: !overridden(MAX_MESSAGE_BYTES),
                config_type: ConfigType::Int,
                doc: "Largest record batch accepted for this topic.",
            },
            Described {
                name: RETENTION_BYTES.into(),
                value: self.retention_bytes.to_string(),
                read_only: false,
                is_default: !overridden(RETENTION_BYTES),
                config_type: ConfigType::Long,
                doc: "Bytes kept per partition before the oldest batches are deleted; -1 = no limit.",
            },
            Described {
                name: RETENTION_MS.into(),
                value: self.retention_ms.to_string(),
                read_only: false,
                is_default: !overridden(RETENTION_MS),
                config_type: ConfigType::Long,
                doc: "Age after which batches are deleted; -1 = forever.",
            },
        ];
        out.extend(READ_ONLY.iter().map(|(k, v)| Described {
            name: (*k).into(),
            value: (*v).into(),
            read_only: true,
            is_default: true,
            config_type: if v.parse::<i64>().is_ok() {
                ConfigType::Long
            } else if v.parse::<f64>().is_ok() {
                ConfigType::Double
            } else if *v == "true" || *v == "false" {
                ConfigType::Boolean
            } else {
                ConfigType::String
            },
            doc: "Fixed in Runnel.",
        }));
        out
    }
}

fn parse_at_least(key: &str, v: &str, min: i64) -> Result<i64, String> {
    let n: i64 = v
        .parse()
        .map_err(|_| format!("{key}: {v:?} is not an integer"))?;
    if n < min {
        return Err(format!("{key}: {n} is below the minimum {min}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<TopicConfig, String> {
        TopicConfig::new(
            &TopicDefaults::default(),
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn overrides_apply_and_are_marked() {
        let c = cfg(&[(RETENTION_MS, "1000")]).expect("valid");
        assert_eq!(c.retention_ms, 1000);
        let d = c.describe();
        let r = d.iter().find(|d| d.name == RETENTION_MS).expect("listed");
        assert!(!r.is_default);
        assert!(
            d.iter()
                .find(|d| d.name == RETENTION_BYTES)
                .expect("listed")
                .is_default
        );
    }

    #[test]
    fn unsupported_configs_are_refused_by_name() {
        for (k, v) in [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "1"),
            ("no.such", "1"),
            (RETENTION_MS, "abc"),
            (RETENTION_BYTES, "-2"),
        ] {
            let err = cfg(&[(k, v)]).expect_err(k);
            assert!(err.contains(k), "{err}");
        }
    }
}
