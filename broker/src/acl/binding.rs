//! What may be stored as an ACL binding (CreateAcls), and the binding filters of DescribeAcls
//! and DeleteAcls with Kafka's `AclBindingFilter` semantics.

use super::codes::{ANY, MATCH, Operation, PatternType, Permission, ResourceType};
use crate::log::AclBinding;

/// The one name of the CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A LITERAL resource name that matches every name; as a host, every host.
pub const WILDCARD: &str = "*";
/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Whether `principal` has Kafka's `Type:name` form (both parts non-empty).
pub fn valid_principal(principal: &str) -> bool {
    principal
        .split_once(':')
        .is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty())
}

/// Why `b` cannot be created; the message goes back with INVALID_REQUEST.
pub fn validate(b: &AclBinding) -> Result<(), String> {
    let resource = ResourceType::from_code(b.resource_type)
        .ok_or_else(|| format!("invalid resource type {}", b.resource_type))?;
    match b.pattern_type {
        ANY | MATCH => {
            return Err(format!(
                "pattern type {} is only valid in a filter; use LITERAL (3) or PREFIXED (4)",
                if b.pattern_type == ANY {
                    "ANY"
                } else {
                    "MATCH"
                }
            ));
        }
        code if PatternType::from_code(code).is_none() => {
            return Err(format!("invalid pattern type {code}"));
        }
        _ => {}
    }
    Operation::from_code(b.operation)
        .ok_or_else(|| format!("invalid operation {}", b.operation))?;
    Permission::from_code(b.permission_type)
        .ok_or_else(|| format!("invalid permission type {}", b.permission_type))?;
    if b.resource_name.is_empty() {
        return Err("the resource name must not be empty".into());
    }
    if resource == ResourceType::Cluster && b.resource_name != CLUSTER_NAME {
        return Err(format!(
            "the only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    if !valid_principal(&b.principal) {
        return Err(format!(
            "principal {:?} is not of the form Type:name (e.g. User:alice)",
            b.principal
        ));
    }
    if b.host != WILDCARD && b.host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!(
            "host {:?} must be * or an IP address (ACLs match the client's address, not its name)",
            b.host
        ));
    }
    Ok(())
}

/// A DescribeAcls or DeleteAcls filter: `None` strings and `ANY` codes match everything; the
/// pattern type MATCH selects the bindings that would apply to the named resource (its literal
/// name, the `*` wildcard and every prefix of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    /// Why the filter cannot be used (unknown codes); the message goes back with
    /// INVALID_REQUEST.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type != ANY && ResourceType::from_code(self.resource_type).is_none() {
            return Err(format!(
                "invalid resource type filter {}",
                self.resource_type
            ));
        }
        if !matches!(self.pattern_type, ANY | MATCH)
            && PatternType::from_code(self.pattern_type).is_none()
        {
            return Err(format!("invalid pattern type filter {}", self.pattern_type));
        }
        if self.operation != ANY && Operation::from_code(self.operation).is_none() {
            return Err(format!("invalid operation filter {}", self.operation));
        }
        if self.permission_type != ANY && Permission::from_code(self.permission_type).is_none() {
            return Err(format!(
                "invalid permission type filter {}",
                self.permission_type
            ));
        }
        Ok(())
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        self.matches_resource(b) && self.matches_entry(b)
    }

    fn matches_resource(&self, b: &AclBinding) -> bool {
        if self.resource_type != ANY && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, ANY | MATCH) && self.pattern_type != b.pattern_type {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type != MATCH {
            return *name == b.resource_name;
        }
        match PatternType::from_code(b.pattern_type) {
            Some(PatternType::Literal) => *name == b.resource_name || b.resource_name == WILDCARD,
            Some(PatternType::Prefixed) => name.starts_with(&b.resource_name),
            None => false,
        }
    }

    fn matches_entry(&self, b: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == ANY || self.operation == b.operation)
            && (self.permission_type == ANY || self.permission_type == b.permission_type)
    }
}
