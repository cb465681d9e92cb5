//! DescribeUserScramCredentials (v0) and AlterUserScramCredentials (v0): SCRAM users over the
//! Kafka protocol (KIP-554), as `kafka-configs.sh --entity-type users`, kafka-python's and
//! confluent-kafka's admin clients manage them. Alterations are durable before they are
//! answered and take effect for new connections at once (see [`crate::auth::Auth`]).
//!
//! Kafka's rules: per-user results; a user whose alterations include an unknown mechanism,
//! iterations outside 4096..=16384, an empty name or the same mechanism twice fails as a whole
//! and none of its alterations is applied; deleting a credential that does not exist is
//! RESOURCE_NOT_FOUND. Describing needs DESCRIBE on the cluster, altering ALTER on the cluster.
//! Upsertions carry the salted password (password-equivalent for SCRAM): send them over TLS.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use runnel_client::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS};

use super::{Ctx, Session, str_bytes};
use crate::acl::Operation;
use crate::auth::scram::{algorithm, credential_from_salted};
use crate::log::{ScramCredential, ScramMechanism};

/// Largest salt accepted (Kafka's clients send 16 to 64 bytes).
const MAX_SALT_BYTES: usize = 1024;

/// DescribeUserScramCredentials: every user when `users` is null or empty.
pub fn describe(
    ctx: &Ctx,
    session: &Session,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let response = DescribeUserScramCredentialsResponse::default();
    if !ctx.acl.allows_cluster(session, Operation::Describe) {
        return response
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes(
                "DESCRIBE on the cluster is needed to describe SCRAM users",
            )));
    }
    let users = ctx.auth.users();
    let info = |list: &[(ScramMechanism, i32)]| -> Vec<CredentialInfo> {
        list.iter()
            .map(|(m, i)| {
                CredentialInfo::default()
                    .with_mechanism(m.code())
                    .with_iterations(*i)
            })
            .collect()
    };
    let requested: Vec<String> = req
        .users
        .unwrap_or_default()
        .iter()
        .map(|u| u.name.to_string())
        .collect();
    let results = if requested.is_empty() {
        users
            .iter()
            .map(|(user, list)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(str_bytes(user))
                    .with_credential_infos(info(list))
            })
            .collect()
    } else {
        let mut seen = HashSet::new();
        let twice: HashSet<&String> = requested.iter().filter(|u| !seen.insert(*u)).collect();
        let mut done = HashSet::new();
        requested
            .iter()
            .filter(|u| done.insert(*u))
            .map(|user| {
                let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
                if twice.contains(user) {
                    return failed(result, ResponseError::DuplicateResource, format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                    ));
                }
                match users.get(user) {
                    Some(list) => result.with_credential_infos(info(list)),
                    None => failed(result, ResponseError::ResourceNotFound, format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )),
                }
            })
            .collect()
    };
    response.with_results(results)
}

fn failed(
    result: DescribeUserScramCredentialsResult,
    error: ResponseError,
    message: String,
) -> DescribeUserScramCredentialsResult {
    result
        .with_error_code(error.code())
        .with_error_message(Some(str_bytes(&message)))
}

/// One user's validated alterations.
#[derive(Default)]
struct UserChanges {
    upserts: Vec<ScramCredential>,
    deletions: Vec<ScramMechanism>,
    error: Option<(ResponseError, String)>,
}

impl UserChanges {
    fn fail(&mut self, error: ResponseError, message: String) {
        self.error.get_or_insert((error, message));
    }
}

/// AlterUserScramCredentials.
pub async fn alter(
    ctx: &Ctx,
    session: &Session,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut users: BTreeMap<String, UserChanges> = BTreeMap::new();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut note = |users: &mut BTreeMap<String, UserChanges>, name: &str, mechanism: i8| {
        if !users.contains_key(name) {
            order.push(name.to_string());
        }
        let changes = users.entry(name.to_string()).or_default();
        let Some(m) = ScramMechanism::from_code(mechanism) else {
            changes.fail(
                ResponseError::UnsupportedSaslMechanism,
                format!("Unknown SCRAM mechanism {mechanism}"),
            );
            return None;
        };
        if !seen.insert((name.to_string(), m)) {
            changes.fail(
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".into(),
            );
            return None;
        }
        if let Err(e) = crate::auth::users::check_name(name) {
            changes.fail(ResponseError::UnacceptableCredential, e.to_string());
            return None;
        }
        Some(m)
    };
    for d in &req.deletions {
        if let Some(m) = note(&mut users, &d.name, d.mechanism) {
            let changes = users.entry(d.name.to_string()).or_default();
            if ctx.auth.credential(&d.name, m).is_none() {
                changes.fail(
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist".into(),
                );
            }
            changes.deletions.push(m);
        }
    }
    for u in &req.upsertions {
        if let Some(m) = note(&mut users, &u.name, u.mechanism) {
            let changes = users.entry(u.name.to_string()).or_default();
            match check_upsertion(m, u.iterations, &u.salt, &u.salted_password) {
                Ok(()) => changes.upserts.push(credential_from_salted(
                    &u.name,
                    m,
                    u.salt.to_vec(),
                    u.iterations,
                    &u.salted_password,
                )),
                Err(message) => changes.fail(ResponseError::UnacceptableCredential, message),
            }
        }
    }
    let allowed = ctx.acl.allows_cluster(session, Operation::Alter);
    let (mut upserts, mut deletions) = (Vec::new(), Vec::new());
    for (name, changes) in &users {
        if allowed && changes.error.is_none() {
            upserts.extend(changes.upserts.iter().cloned());
            deletions.extend(changes.deletions.iter().map(|m| (name.clone(), *m)));
        }
    }
    let stored = if upserts.is_empty() && deletions.is_empty() {
        Ok(())
    } else {
        ctx.auth.alter(upserts, deletions).await
    };
    let results = order
        .iter()
        .map(|name| {
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(name));
            let error = match (&users[name].error, &stored) {
                _ if !allowed => Some((
                    ResponseError::ClusterAuthorizationFailed,
                    "ALTER on the cluster is needed to change SCRAM users".to_string(),
                )),
                (Some(e), _) => Some(e.clone()),
                (None, Err(e)) => Some((ResponseError::UnknownServerError, e.to_string())),
                (None, Ok(())) => None,
            };
            match error {
                None => result,
                Some((code, message)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    if allowed {
        for name in &order {
            if users[name].error.is_none() && stored.is_ok() {
                tracing::info!(user = %name, principal = %session.principal, "SCRAM credentials altered");
            }
        }
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn check_upsertion(
    mechanism: ScramMechanism,
    iterations: i32,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<(), String> {
    let name = mechanism.name();
    if iterations < MIN_ITERATIONS as i32 {
        return Err(format!(
            "Iterations {iterations} is less than the minimum {MIN_ITERATIONS} for {name}"
        ));
    }
    if iterations > MAX_ITERATIONS as i32 {
        return Err(format!(
            "Iterations {iterations} is more than the maximum {MAX_ITERATIONS} for {name}"
        ));
    }
    if salt.is_empty() || salt.len() > MAX_SALT_BYTES {
        return Err(format!("the salt must have 1 to {MAX_SALT_BYTES} bytes"));
    }
    let len = algorithm(mechanism).output_len();
    if salted_password.len() != len {
        return Err(format!(
            "the salted password of {name} must be the {len}-byte PBKDF2 output, not {} bytes",
            salted_password.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_upsertions_outside_kafkas_rules_should_say_why() {
        let ok = check_upsertion(ScramMechanism::Sha256, 4096, b"salt", &[0; 32]);
        assert_eq!(ok, Ok(()));
        let few = check_upsertion(ScramMechanism::Sha256, 4095, b"salt", &[0; 32]);
        assert!(few.expect_err("too few").contains("minimum 4096"));
        let many = check_upsertion(ScramMechanism::Sha512, 16_385, b"salt", &[0; 64]);
        assert!(many.expect_err("too many").contains("maximum 16384"));
        assert!(check_upsertion(ScramMechanism::Sha512, 8192, b"", &[0; 64]).is_err());
        let short = check_upsertion(ScramMechanism::Sha512, 8192, b"s", &[0; 32]);
        assert!(short.expect_err("length").contains("64-byte"));
    }
}
