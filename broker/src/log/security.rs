//! What the store keeps for security: SCRAM credentials (salted, never passwords) and ACL
//! bindings, behind the narrow [`SecurityStore`] trait. Both are small sets, read whole at
//! start-up and cached by their owners (`auth`, `acl`); writes are durable when they resolve.

use serde::{Deserialize, Serialize};

use super::{Pending, StoreError};

/// SCRAM mechanisms, numbered like Kafka's `ScramMechanism` (DescribeUserScramCredentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256 = 1,
    Sha512 = 2,
}

impl ScramMechanism {
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        self as i8
    }

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// One user's credential for one mechanism (RFC 5802): enough to verify a proof, not to
/// recover the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// One ACL binding, with Kafka's numeric codes (AclResourceType, PatternType, AclOperation,
/// AclPermissionType) so CreateAcls/DescribeAcls/DeleteAcls carry them unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    /// `User:alice`, or `User:*`.
    pub principal: String,
    /// An IP address, or `*`.
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}

/// Durable SCRAM credentials and ACLs. Reads are blocking; writes resolve once durable and
/// are not counted as appends against the disk budget.
pub trait SecurityStore: Send + Sync {
    /// Every stored credential. Blocking.
    fn scram_credentials(&self) -> Result<Vec<ScramCredential>, StoreError>;
    /// Stores `upserts` (replacing the same user and mechanism) and removes `deletions`, in
    /// one transaction.
    fn alter_scram_credentials(
        &self,
        upserts: Vec<ScramCredential>,
        deletions: Vec<(String, ScramMechanism)>,
    ) -> Pending<Result<(), StoreError>>;
    /// Every stored ACL binding. Blocking.
    fn acls(&self) -> Result<Vec<AclBinding>, StoreError>;
    /// Adds `create` and removes `delete` (exact bindings), in one transaction.
    fn alter_acls(
        &self,
        create: Vec<AclBinding>,
        delete: Vec<AclBinding>,
    ) -> Pending<Result<(), StoreError>>;
}
