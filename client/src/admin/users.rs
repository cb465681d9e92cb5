//! SCRAM users (KIP-554): list them with DescribeUserScramCredentials, add one or change its
//! password and remove credentials with AlterUserScramCredentials (both v0).
//!
//! The password never leaves this process: an upsertion carries a fresh random salt, the
//! iteration count and the salted password Hi(password, salt, i) computed here with
//! [`crate::security::scram`]. The salted password is still password-equivalent for SCRAM, so
//! send upsertions over TLS. Neither the password nor anything derived from it is part of an
//! error message.

use std::num::NonZeroU32;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use ring::rand::SecureRandom as _;

use crate::cluster::Client;
use crate::error::{ClientError, Result};
use crate::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramAlgorithm};

/// Both APIs exist only in v0.
const USER_SCRAM_VERSIONS: (i16, i16) = (0, 0);
/// Random salt bytes per credential (what Runnel's `runnel user add` uses).
const SALT_BYTES: usize = 32;
/// Iterations Runnel and Kafka's tools use unless told otherwise.
pub const DEFAULT_ITERATIONS: u32 = 8192;

/// Kafka's `ScramMechanism` code of an algorithm (0 is UNKNOWN).
fn mechanism_code(algorithm: ScramAlgorithm) -> i8 {
    match algorithm {
        ScramAlgorithm::Sha256 => 1,
        ScramAlgorithm::Sha512 => 2,
    }
}

fn algorithm_of(code: i8) -> Option<ScramAlgorithm> {
    match code {
        1 => Some(ScramAlgorithm::Sha256),
        2 => Some(ScramAlgorithm::Sha512),
        _ => None,
    }
}

/// One stored credential of a user: its mechanism (`None`: a code this client does not know)
/// and iteration count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScramCredentialInfo {
    pub mechanism: Option<ScramAlgorithm>,
    pub iterations: i32,
}

impl ScramCredentialInfo {
    /// `SCRAM-SHA-512 (8192 iterations)`.
    pub fn label(&self) -> String {
        let name = self
            .mechanism
            .map_or("unknown mechanism", |m| m.mechanism());
        format!("{name} ({} iterations)", self.iterations)
    }
}

/// A SCRAM user and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub name: String,
    pub credentials: Vec<ScramCredentialInfo>,
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn with_message(context: String, message: &Option<StrBytes>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("{context} ({m})"),
        _ => context,
    }
}

/// A salt, the iterations and Hi(password, salt, iterations) for one mechanism.
fn upsertion(
    user: &str,
    algorithm: ScramAlgorithm,
    password: &str,
    iterations: NonZeroU32,
) -> Result<ScramCredentialUpsertion> {
    let mut salt = [0u8; SALT_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| {
            ClientError::Security(crate::security::SecurityError::Sasl(
                "no random salt: the system's random source failed".into(),
            ))
        })?;
    let salted = algorithm.salted_password(password.as_bytes(), &salt, iterations);
    Ok(ScramCredentialUpsertion::default()
        .with_name(text(user))
        .with_mechanism(mechanism_code(algorithm))
        .with_iterations(iterations.get() as i32)
        .with_salt(Bytes::copy_from_slice(&salt))
        .with_salted_password(Bytes::from(salted)))
}

impl Client {
    /// Every SCRAM user with its credentials, sorted by name. A principal without DESCRIBE on
    /// the cluster gets CLUSTER_AUTHORIZATION_FAILED; a broker without the API,
    /// [`ClientError::UnsupportedApi`].
    pub async fn describe_scram_users(&self) -> Result<Vec<ScramUser>> {
        let conn = self.any_connection().await?;
        let request = DescribeUserScramCredentialsRequest::default().with_users(None);
        let response = conn.call(&request, USER_SCRAM_VERSIONS).await?;
        let context = with_message("describing SCRAM users".into(), &response.error_message);
        if let Some(e) = ClientError::kafka(context, response.error_code) {
            return Err(e);
        }
        let mut users = Vec::with_capacity(response.results.len());
        for r in &response.results {
            let context = with_message(
                format!("describing SCRAM user {}", r.user),
                &r.error_message,
            );
            if let Some(e) = ClientError::kafka(context, r.error_code) {
                return Err(e);
            }
            users.push(ScramUser {
                name: r.user.to_string(),
                credentials: r
                    .credential_infos
                    .iter()
                    .map(|c| ScramCredentialInfo {
                        mechanism: algorithm_of(c.mechanism),
                        iterations: c.iterations,
                    })
                    .collect(),
            });
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// Adds `user`, or sets a new password, for each of `mechanisms` with `iterations`
    /// (4096..=16384, Kafka's bounds). The salted passwords are computed here, off the async
    /// threads; the password itself is never sent.
    pub async fn upsert_scram_user(
        &self,
        user: &str,
        password: &str,
        mechanisms: &[ScramAlgorithm],
        iterations: u32,
    ) -> Result<()> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ClientError::Security(crate::security::SecurityError::Sasl(
                format!(
                    "iterations must be within {MIN_ITERATIONS}..={MAX_ITERATIONS}, not {iterations}"
                ),
            )));
        }
        let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        let (name, password, list) = (user.to_owned(), password.to_owned(), mechanisms.to_vec());
        let upsertions = tokio::task::spawn_blocking(move || {
            list.iter()
                .map(|m| upsertion(&name, *m, &password, iterations))
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| {
            ClientError::Security(crate::security::SecurityError::Sasl(format!(
                "computing the salted password failed: {e}"
            )))
        })??;
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(upsertions);
        self.alter_scram(
            request,
            format!("setting the password of SCRAM user {user}"),
        )
        .await
    }

    /// Removes `user`'s credentials of `mechanisms` (all of them removes the user). Removing a
    /// credential that does not exist is RESOURCE_NOT_FOUND.
    pub async fn delete_scram_user(&self, user: &str, mechanisms: &[ScramAlgorithm]) -> Result<()> {
        let deletions = mechanisms
            .iter()
            .map(|m| {
                ScramCredentialDeletion::default()
                    .with_name(text(user))
                    .with_mechanism(mechanism_code(*m))
            })
            .collect();
        let request = AlterUserScramCredentialsRequest::default().with_deletions(deletions);
        self.alter_scram(request, format!("deleting SCRAM user {user}"))
            .await
    }

    async fn alter_scram(
        &self,
        request: AlterUserScramCredentialsRequest,
        context: String,
    ) -> Result<()> {
        let conn = self.any_connection().await?;
        let response = conn.call(&request, USER_SCRAM_VERSIONS).await?;
        for r in &response.results {
            if let Some(e) = ClientError::kafka(
                with_message(context.clone(), &r.error_message),
                r.error_code,
            ) {
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_password_when_building_an_upsertion_should_carry_a_salted_password_not_the_password()
    {
        let iterations = NonZeroU32::new(4096).expect("non-zero");
        let u = upsertion("carol", ScramAlgorithm::Sha512, "secret-pw", iterations).expect("salt");
        assert_eq!(u.mechanism, 2);
        assert_eq!(u.iterations, 4096);
        assert_eq!(u.salt.len(), SALT_BYTES);
        assert_eq!(u.salted_password.len(), 64);
        assert_eq!(
            u.salted_password.as_ref(),
            ScramAlgorithm::Sha512
                .salted_password(b"secret-pw", &u.salt, iterations)
                .as_slice()
        );
        let other =
            upsertion("carol", ScramAlgorithm::Sha512, "secret-pw", iterations).expect("salt");
        assert_ne!(u.salt, other.salt, "each upsertion has a fresh salt");
        assert_eq!(
            algorithm_of(mechanism_code(ScramAlgorithm::Sha256)),
            Some(ScramAlgorithm::Sha256)
        );
        assert_eq!(algorithm_of(0), None);
    }
}
