//! Authentication: who a client is. The connection's SASL exchange ([`crate::server::sasl`])
//! asks [`Auth`] for credentials; TLS client certificates are named by [`dn`].
//!
//! - [`Auth`] keeps every SCRAM credential in memory, loaded from the [`SecurityStore`] at
//!   start-up and updated only after a durable write, so a lookup never touches the disk and a
//!   credential the API acknowledged survives a crash;
//! - [`scram`]: the SCRAM-SHA-256/512 server exchange; [`plain`]: PLAIN checked against the same
//!   SCRAM credentials (one credential store for both);
//! - [`users`]: the `runnel user add|remove|list` subcommand, for a stopped broker;
//! - [`AuthMetrics`]: authentication counters for `/metrics`.

pub mod dn;
pub mod plain;
pub mod scram;
pub mod users;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use runnel_client::security::scram::ScramAlgorithm;

use crate::log::{ScramCredential, ScramMechanism, SecurityStore, StoreError};
use scram::Lookup;

/// Iterations of new credentials (`runnel user add`) and of mock ones. Kafka accepts
/// 4096..=16384; 8192 doubles the RFC minimum at ~10 ms of PBKDF2 on a Raspberry Pi 4.
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Salt bytes of new credentials and of mock ones.
pub const SALT_BYTES: usize = 32;

/// Authentication counters, shared with the metrics endpoint.
#[derive(Debug, Default)]
pub struct AuthMetrics {
    /// SASL exchanges that ended in SASL_AUTHENTICATION_FAILED.
    pub failures: AtomicU64,
    /// SASL exchanges that authenticated a user.
    pub successes: AtomicU64,
}

/// The Prometheus text of the counters.
pub fn render_metrics(metrics: &AuthMetrics) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        (
            "runnel_sasl_authentication_failures_total",
            "SASL authentications refused (bad credentials or a broken exchange)",
            &metrics.failures,
        ),
        (
            "runnel_sasl_authentication_successes_total",
            "SASL authentications that succeeded",
            &metrics.successes,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            value.load(Ordering::Relaxed)
        ));
    }
    out
}

type Cache = HashMap<(String, ScramMechanism), Arc<ScramCredential>>;

/// The broker's credentials and authentication counters.
pub struct Auth {
    store: Arc<dyn SecurityStore>,
    cache: RwLock<Cache>,
    /// Serializes alterations so the cache applies them in the store's order.
    writes: tokio::sync::Mutex<()>,
    metrics: Arc<AuthMetrics>,
    /// Key of the mock salts of unknown users; random per process.
    mock_key: Vec<u8>,
    /// Bounds concurrent PLAIN checks (each costs a PBKDF2) to the number of cores.
    plain_checks: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("credentials", &self.read().len())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Reads every credential from `store` (blocking).
    pub fn load(store: Arc<dyn SecurityStore>) -> Result<Auth, StoreError> {
        let cache = store
            .scram_credentials()?
            .into_iter()
            .map(|c| ((c.user.clone(), c.mechanism), Arc::new(c)))
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Auth {
            store,
            cache: RwLock::new(cache),
            writes: tokio::sync::Mutex::new(()),
            metrics: Arc::new(AuthMetrics::default()),
            mock_key: random_bytes(32)?,
            plain_checks: tokio::sync::Semaphore::new(cores),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metrics(&self) -> Arc<AuthMetrics> {
        self.metrics.clone()
    }

    pub fn credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Option<Arc<ScramCredential>> {
        self.read().get(&(user.to_string(), mechanism)).cloned()
    }

    /// Every user with their mechanisms and iteration counts, sorted by user.
    pub fn users(&self) -> BTreeMap<String, Vec<(ScramMechanism, i32)>> {
        let mut users: BTreeMap<String, Vec<(ScramMechanism, i32)>> = BTreeMap::new();
        for ((user, mechanism), c) in self.read().iter() {
            users
                .entry(user.clone())
                .or_default()
                .push((*mechanism, c.iterations));
        }
        for mechanisms in users.values_mut() {
            mechanisms.sort();
        }
        users
    }

    /// The credential a SCRAM exchange for `user` runs against: the stored one, or a mock that
    /// cannot succeed (RFC 5802 §5.1) with a salt derived from the user name, so repeated
    /// attempts see the same salt as they would for a real user.
    pub fn scram_lookup(&self, user: &str, mechanism: ScramMechanism) -> Lookup {
        match self.credential(user, mechanism) {
            Some(c) => Lookup {
                credential: (*c).clone(),
                real: true,
            },
            None => Lookup {
                credential: self.mock(user, mechanism),
                real: false,
            },
        }
    }

    /// The credential PLAIN checks a password against: SCRAM-SHA-512's if the user has one,
    /// else SCRAM-SHA-256's, else a mock (so unknown users cost the same PBKDF2).
    pub fn plain_lookup(&self, user: &str) -> Lookup {
        for mechanism in [ScramMechanism::Sha512, ScramMechanism::Sha256] {
            if let Some(c) = self.credential(user, mechanism) {
                return Lookup {
                    credential: (*c).clone(),
                    real: true,
                };
            }
        }
        Lookup {
            credential: self.mock(user, ScramMechanism::Sha512),
            real: false,
        }
    }

    /// Checks a PLAIN message off the async threads, at most one check per core at a time.
    pub async fn check_plain(&self, message: Vec<u8>) -> Result<String, plain::PlainFailure> {
        let user = plain::username(&message)?.to_string();
        let lookup = self.plain_lookup(&user);
        let _permit = self.plain_checks.acquire().await;
        tokio::task::spawn_blocking(move || plain::check(&message, &lookup))
            .await
            .unwrap_or_else(|e| {
                Err(plain::PlainFailure {
                    reason: format!("the PLAIN check stopped: {e}"),
                    bad_credentials: false,
                })
            })
    }

    fn mock(&self, user: &str, mechanism: ScramMechanism) -> ScramCredential {
        let derive = |what: &[u8], len: usize| {
            let mut data = vec![mechanism.code() as u8];
            data.extend_from_slice(what);
            data.extend_from_slice(user.as_bytes());
            let mut out = ScramAlgorithm::Sha512.hmac(&self.mock_key, &data);
            out.truncate(len);
            out
        };
        let len = scram::algorithm(mechanism).output_len();
        ScramCredential {
            user: user.to_string(),
            mechanism,
            salt: derive(b"salt", SALT_BYTES),
            iterations: DEFAULT_ITERATIONS as i32,
            stored_key: derive(b"stored", len),
            server_key: derive(b"server", len),
        }
    }

    /// Stores `upserts` and removes `deletions` durably, then updates the cache.
    pub async fn alter(
        &self,
        upserts: Vec<ScramCredential>,
        deletions: Vec<(String, ScramMechanism)>,
    ) -> Result<(), StoreError> {
        let _serial = self.writes.lock().await;
        crate::log::wait(
            self.store
                .alter_scram_credentials(upserts.clone(), deletions.clone()),
        )
        .await??;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for key in deletions {
            cache.remove(&key);
        }
        for c in upserts {
            cache.insert((c.user.clone(), c.mechanism), Arc::new(c));
        }
        Ok(())
    }

    /// Counts a finished exchange.
    pub fn record(&self, authenticated: bool) {
        let counter = if authenticated {
            &self.metrics.successes
        } else {
            &self.metrics.failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// `len` bytes from the system's random source.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, StoreError> {
    use ring::rand::SecureRandom as _;
    let mut out = vec![0; len];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| StoreError::Io("the system's random source failed".into()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{AclBinding, Pending};

    /// A store that keeps credentials in memory.
    #[derive(Default)]
    struct Memory(std::sync::Mutex<Vec<ScramCredential>>);

    impl SecurityStore for Memory {
        fn scram_credentials(&self) -> Result<Vec<ScramCredential>, StoreError> {
            Ok(self.0.lock().expect("lock").clone())
        }
        fn alter_scram_credentials(
            &self,
            upserts: Vec<ScramCredential>,
            deletions: Vec<(String, ScramMechanism)>,
        ) -> Pending<Result<(), StoreError>> {
            let mut all = self.0.lock().expect("lock");
            all.retain(|c| !deletions.contains(&(c.user.clone(), c.mechanism)));
            all.retain(|c| {
                !upserts
                    .iter()
                    .any(|u| (&u.user, u.mechanism) == (&c.user, c.mechanism))
            });
            all.extend(upserts);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Ok(()));
            rx
        }
        fn acls(&self) -> Result<Vec<AclBinding>, StoreError> {
            Ok(Vec::new())
        }
        fn alter_acls(
            &self,
            _: Vec<AclBinding>,
            _: Vec<AclBinding>,
        ) -> Pending<Result<(), StoreError>> {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = tx.send(Ok(()));
            rx
        }
    }

    fn credential(user: &str, mechanism: ScramMechanism, password: &[u8]) -> ScramCredential {
        let iterations = std::num::NonZeroU32::new(4096).expect("non-zero");
        scram::credential_from_password(user, mechanism, password, b"salt".to_vec(), iterations)
    }

    #[tokio::test]
    async fn given_alterations_should_update_the_cache_after_the_store() {
        let store = Arc::new(Memory::default());
        let auth = Auth::load(store.clone()).expect("loads");
        auth.alter(
            vec![
                credential("alice", ScramMechanism::Sha256, b"pw"),
                credential("alice", ScramMechanism::Sha512, b"pw"),
            ],
            Vec::new(),
        )
        .await
        .expect("stored");
        assert!(auth.scram_lookup("alice", ScramMechanism::Sha256).real);
        auth.alter(Vec::new(), vec![("alice".into(), ScramMechanism::Sha512)])
            .await
            .expect("deleted");
        assert!(!auth.scram_lookup("alice", ScramMechanism::Sha512).real);
        assert_eq!(auth.users()["alice"], vec![(ScramMechanism::Sha256, 4096)]);
        let reloaded = Auth::load(store).expect("loads");
        assert_eq!(reloaded.users(), auth.users());
        assert_eq!(
            auth.check_plain(b"\0alice\0pw".to_vec()).await,
            Ok("alice".into()),
            "PLAIN falls back to the SHA-256 credential"
        );
    }

    #[test]
    fn given_an_unknown_user_should_mock_a_stable_credential() {
        let auth = Auth::load(Arc::new(Memory::default())).expect("loads");
        let a = auth.scram_lookup("mallory", ScramMechanism::Sha256);
        let b = auth.scram_lookup("mallory", ScramMechanism::Sha256);
        assert!(!a.real);
        assert_eq!(a.credential.salt, b.credential.salt);
        assert_eq!(a.credential.salt.len(), SALT_BYTES);
        assert_ne!(
            a.credential.salt,
            auth.scram_lookup("trudy", ScramMechanism::Sha256)
                .credential
                .salt
        );
        assert_eq!(a.credential.stored_key.len(), 32);
    }

    #[test]
    fn given_counters_should_render_prometheus_text() {
        let metrics = AuthMetrics::default();
        metrics.failures.fetch_add(3, Ordering::Relaxed);
        let text = render_metrics(&metrics);
        assert!(
            text.contains("runnel_sasl_authentication_failures_total 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE runnel_sasl_authentication_failures_total counter"));
    }
}
