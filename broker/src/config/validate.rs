//! Start-up validation: one clear error naming the offending key.

use std::path::PathBuf;

use super::Config;

/// Why the configuration cannot be used. `main` prints it and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("invalid [[bridge]] section: {0}")]
    Bridge(#[from] runnel_bridge::config::ConfigError),
    #[error("invalid [[uplink]] section: {0}")]
    Uplink(#[from] crate::uplink::UplinkConfigError),
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Smallest disk budget that leaves LMDB room for its own bookkeeping.
pub const MIN_DISK_BYTES: u64 = 4 * 1024 * 1024;

impl Config {
    /// Checks every value that could make the broker misbehave later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        runnel_bridge::config::validate_all(&self.bridge)?;
        crate::uplink::validate_all(&self.uplink)?;
        super::listeners::validate(&self.listener).map_err(|(key, reason)| invalid(key, reason))?;
        self.authorization
            .validate()
            .map_err(|(key, reason)| invalid(key, reason))?;
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
            // Both append to this node's copy of a partition, which in a cluster may be a
            // follower's; they need leader routing first (the standalone runnel-bridge has it).
            if !self.bridge.is_empty() {
                return Err(invalid(
                    "bridge",
                    "embedded [[bridge]] tables are not supported with [cluster] yet; run runnel-bridge against the cluster",
                ));
            }
            if self
                .listener
                .first()
                .is_some_and(|l| l.protocol != super::listeners::SecurityProtocol::Plaintext)
            {
                return Err(invalid(
                    "listener",
                    "with [cluster], the first [[listener]] carries replication and must be PLAINTEXT",
                ));
            }
            if !self.uplink.is_empty() {
                return Err(invalid(
                    "uplink",
                    "[[uplink]] tables are not supported with [cluster] yet",
                ));
            }
        }
        let s = &self.server;
        if s.node_id < 0 {
            return Err(invalid("server.node_id", "must be >= 0"));
        }
        if s.max_request_size < 1024 {
            return Err(invalid(
                "server.max_request_size",
                "must be at least 1024 bytes",
            ));
        }
        if s.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        if s.max_connections_per_ip == 0 {
            return Err(invalid(
                "server.max_connections_per_ip",
                "must be at least 1",
            ));
        }
        if s.connections_max_idle_ms < 1000 {
            return Err(invalid(
                "server.connections_max_idle_ms",
                "must be at least 1000 (1 s)",
            ));
        }
        if s.listen.ip().is_unspecified() && s.advertised_listener.is_none() {
            return Err(invalid(
                "server.advertised_listener",
                format!(
                    "must be set when listening on {}: clients cannot connect to an unspecified address",
                    s.listen
                ),
            ));
        }
        if let Some(adv) = &s.advertised_listener {
            crate::server::parse_host_port(adv).map_err(|reason| {
                invalid("server.advertised_listener", format!("{adv:?}: {reason}"))
            })?;
        }
        let st = &self.storage;
        if st.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        if let Some(b) = st.max_disk_bytes
            && b < MIN_DISK_BYTES
        {
            return Err(invalid(
                "storage.max_disk_bytes",
                format!("{b} is below the minimum of {MIN_DISK_BYTES} bytes"),
            ));
        }
        if st.retention_check_interval_ms == 0 {
            return Err(invalid(
                "storage.retention_check_interval_ms",
                "must be > 0",
            ));
        }
        let t = &self.topics;
        if t.default_partitions < 1 {
            return Err(invalid("topics.default_partitions", "must be >= 1"));
        }
        if t.retention_ms < -1 {
            return Err(invalid("topics.retention_ms", "must be -1 or >= 0"));
        }
        if t.retention_bytes < -1 {
            return Err(invalid("topics.retention_bytes", "must be -1 or >= 0"));
        }
        if t.max_message_bytes < 64 {
            return Err(invalid("topics.max_message_bytes", "must be at least 64"));
        }
        let g = &self.groups;
        if g.min_session_timeout_ms < 1 {
            return Err(invalid("groups.min_session_timeout_ms", "must be > 0"));
        }
        if g.max_session_timeout_ms < g.min_session_timeout_ms {
            return Err(invalid(
                "groups.max_session_timeout_ms",
                "must be >= groups.min_session_timeout_ms",
            ));
        }
        if g.offsets_retention_minutes == 0 {
            return Err(invalid("groups.offsets_retention_minutes", "must be > 0"));
        }
        if self.log.level.trim().is_empty() {
            return Err(invalid("log.level", "must not be empty"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn bad_value_names_its_key() {
        let mut c = Config::default();
        c.topics.default_partitions = 0;
        let err = c.validate().expect_err("must fail").to_string();
        assert!(err.contains("topics.default_partitions"), "{err}");
    }

    #[test]
    fn unknown_key_in_file_is_rejected() {
        let err = toml::from_str::<Config>("[server]\nlisten_port = 1\n").expect_err("unknown key");
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn file_values_are_overridden_by_flags() {
        let mut c: Config =
            toml::from_str("[topics]\ndefault_partitions = 3\nauto_create = false\n")
                .expect("parses");
        let args = Args {
            default_partitions: Some(5),
            ..Args::default()
        };
        args.apply(&mut c);
        assert_eq!(c.topics.default_partitions, 5);
        assert!(!c.topics.auto_create, "file value kept when no flag given");
    }
}
