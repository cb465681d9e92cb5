//! The Access screen's side of the worker: ACL bindings (DescribeAcls) and SCRAM users
//! (DescribeUserScramCredentials) loaded with each refresh once the screen was opened for a
//! cluster, and the actions — create and delete a binding, add a user or set its password,
//! delete a user. A cluster that refuses (CLUSTER_AUTHORIZATION_FAILED, no authorizer, or no
//! such API) is answered in plain words; it never fails the refresh.

use runnel_client::admin::users::ScramUser;
use runnel_client::security::scram::ScramAlgorithm;
use runnel_client::{AclBinding, AclFilter, ClientError, ResponseError};

use super::ClusterCtx;

/// A password on its way to the worker; `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the Access screen asks of a cluster.
#[derive(Debug, Clone)]
pub enum AccessAction {
    CreateAcl(AclBinding),
    DeleteAcl(AclBinding),
    /// Adds the user, or sets a new password, for each mechanism.
    UpsertUser {
        name: String,
        password: Secret,
        mechanisms: Vec<ScramAlgorithm>,
        iterations: u32,
    },
    /// Removes these credentials (all of a user's removes the user).
    DeleteUser {
        name: String,
        mechanisms: Vec<ScramAlgorithm>,
    },
}

/// `ALLOW READ for User:bob on TOPIC orders (LITERAL) from *`.
pub fn binding_label(b: &AclBinding) -> String {
    format!(
        "{} {} for {} on {} {} ({}) from {}",
        b.permission.name(),
        b.operation.name(),
        b.principal,
        b.resource_type.name(),
        b.resource_name,
        b.pattern_type.name(),
        b.host
    )
}

impl AccessAction {
    /// The words shown next to the outcome.
    pub fn label(&self) -> String {
        match self {
            AccessAction::CreateAcl(b) => format!("create ACL {}", binding_label(b)),
            AccessAction::DeleteAcl(b) => format!("delete ACL {}", binding_label(b)),
            AccessAction::UpsertUser { name, .. } => format!("set password of user {name}"),
            AccessAction::DeleteUser { name, .. } => format!("delete user {name}"),
        }
    }
}

/// `error` in plain words, for `what` (e.g. `list ACLs`).
pub fn plain(error: &ClientError, what: &str) -> String {
    match error {
        ClientError::Kafka {
            error: ResponseError::ClusterAuthorizationFailed,
            ..
        } => format!(
            "Not allowed: this connection's user may not {what} on this cluster \
             (CLUSTER_AUTHORIZATION_FAILED). A super user, or an ACL granting it on the \
             CLUSTER resource, is needed."
        ),
        ClientError::Kafka {
            error: ResponseError::SecurityDisabled,
            ..
        } => format!("This cluster has no authorizer, so it cannot {what} (SECURITY_DISABLED)."),
        ClientError::UnsupportedApi { api, .. } => {
            format!("This cluster does not offer {api}, so it cannot {what}.")
        }
        other => format!("Cannot {what}: {other}"),
    }
}

/// Every ACL binding and every SCRAM user, each with its own outcome.
pub async fn load(
    ctx: &ClusterCtx,
) -> (
    Result<Vec<AclBinding>, String>,
    Result<Vec<ScramUser>, String>,
) {
    let acls = match ctx.client.describe_acls(&AclFilter::any()).await {
        Ok(mut list) => {
            list.sort();
            Ok(list)
        }
        Err(e) => Err(plain(&e, "list ACLs")),
    };
    let users = ctx
        .client
        .describe_scram_users()
        .await
        .map_err(|e| plain(&e, "list SCRAM users"));
    (acls, users)
}

/// Runs one action; a success asks for a refresh, which reloads the lists.
pub async fn perform(ctx: &ClusterCtx, action: AccessAction) -> Result<String, String> {
    let client = &ctx.client;
    let message = match action {
        AccessAction::CreateAcl(binding) => {
            let outcome = client
                .create_acls(std::slice::from_ref(&binding))
                .await
                .map_err(|e| plain(&e, "create ACLs"))?;
            for o in outcome {
                o.map_err(|e| plain(&e, "create ACLs"))?;
            }
            "created".to_string()
        }
        AccessAction::DeleteAcl(binding) => {
            let mut deleted = 0;
            for o in client
                .delete_acls(&[binding.to_filter()])
                .await
                .map_err(|e| plain(&e, "delete ACLs"))?
            {
                deleted += o.map_err(|e| plain(&e, "delete ACLs"))?.len();
            }
            if deleted == 0 {
                return Err("no such binding (deleted meanwhile?)".into());
            }
            "deleted".to_string()
        }
        AccessAction::UpsertUser {
            name,
            password,
            mechanisms,
            iterations,
        } => {
            client
                .upsert_scram_user(&name, &password.0, &mechanisms, iterations)
                .await
                .map_err(|e| plain(&e, "change SCRAM users"))?;
            let names: Vec<&str> = mechanisms.iter().map(|m| m.mechanism()).collect();
            format!("saved for {} ({iterations} iterations)", names.join(", "))
        }
        AccessAction::DeleteUser { name, mechanisms } => {
            client
                .delete_scram_user(&name, &mechanisms)
                .await
                .map_err(|e| plain(&e, "change SCRAM users"))?;
            "deleted".to_string()
        }
    };
    ctx.refresh_soon();
    Ok(message)
}
