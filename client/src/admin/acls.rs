//! ACLs: create, describe and delete Kafka ACL bindings (CreateAcls, DescribeAcls,
//! DeleteAcls v1–v3). The codes are Kafka's; unknown ones from a newer broker are kept as
//! `Unknown(code)` so a listing never fails on them.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::error::{ClientError, Result};

/// v0 has no pattern type and was dropped by Kafka 4.0.
const ACL_VERSIONS: (i16, i16) = (1, 3);

macro_rules! codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant,)+
            /// A code this client does not know.
            Unknown(i8),
        }

        impl $name {
            pub fn from_code(code: i8) -> Self {
                match code {
                    $($code => $name::$variant,)+
                    other => $name::Unknown(other),
                }
            }

            pub fn code(self) -> i8 {
                match self {
                    $($name::$variant => $code,)+
                    $name::Unknown(code) => code,
                }
            }

            /// Kafka's name (`TOPIC`, `PREFIXED`, `READ`, `ALLOW` …).
            pub fn name(self) -> String {
                match self {
                    $($name::$variant => $text.to_owned(),)+
                    $name::Unknown(code) => format!("UNKNOWN({code})"),
                }
            }
        }
    };
}

codes!(
    /// Kafka's `ResourceType` (ANY only in filters).
    AclResourceType {
        Any = 1 => "ANY",
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
    }
);

codes!(
    /// Kafka's `PatternType` (ANY and MATCH only in filters).
    AclPatternType {
        Any = 1 => "ANY",
        Match = 2 => "MATCH",
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
);

codes!(
    /// Kafka's `AclOperation` (ANY only in filters).
    AclOperation {
        Any = 1 => "ANY",
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
    }
);

codes!(
    /// Kafka's `AclPermissionType` (ANY only in filters).
    AclPermission {
        Any = 1 => "ANY",
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
);

/// The name of the CLUSTER resource.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

/// One ACL binding: who (`User:alice`, `User:*`) from where (an IP address or `*`) may or may
/// not do what to which resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: AclResourceType,
    pub resource_name: String,
    pub pattern_type: AclPatternType,
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclBinding {
    /// An ALLOW or DENY of `operation` on the LITERAL resource, from any host.
    pub fn new(
        resource_type: AclResourceType,
        resource_name: impl Into<String>,
        principal: impl Into<String>,
        operation: AclOperation,
        permission: AclPermission,
    ) -> Self {
        AclBinding {
            resource_type,
            resource_name: resource_name.into(),
            pattern_type: AclPatternType::Literal,
            principal: principal.into(),
            host: "*".to_owned(),
            operation,
            permission,
        }
    }

    /// The same binding with another pattern type (e.g. PREFIXED).
    pub fn with_pattern(mut self, pattern_type: AclPatternType) -> Self {
        self.pattern_type = pattern_type;
        self
    }

    /// The filter that matches exactly this binding (to delete it).
    pub fn to_filter(&self) -> AclFilter {
        AclFilter {
            resource_type: self.resource_type,
            resource_name: Some(self.resource_name.clone()),
            pattern_type: self.pattern_type,
            principal: Some(self.principal.clone()),
            host: Some(self.host.clone()),
            operation: self.operation,
            permission: self.permission,
        }
    }
}

/// Which bindings to describe or delete: `None` and the ANY codes match everything; the
/// pattern type MATCH selects the bindings that apply to the named resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AclFilter {
    pub resource_type: AclResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: AclPatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl AclFilter {
    /// Every binding.
    pub fn any() -> Self {
        AclFilter {
            resource_type: AclResourceType::Any,
            resource_name: None,
            pattern_type: AclPatternType::Any,
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: AclPermission::Any,
        }
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn opt_text(s: &Option<String>) -> Option<StrBytes> {
    s.as_deref().map(text)
}

fn binding(
    resource: (i8, &StrBytes, i8),
    principal: &StrBytes,
    host: &StrBytes,
    operation: i8,
    permission: i8,
) -> AclBinding {
    AclBinding {
        resource_type: AclResourceType::from_code(resource.0),
        resource_name: resource.1.to_string(),
        pattern_type: AclPatternType::from_code(resource.2),
        principal: principal.to_string(),
        host: host.to_string(),
        operation: AclOperation::from_code(operation),
        permission: AclPermission::from_code(permission),
    }
}

fn with_message(context: String, message: &Option<StrBytes>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("{context} ({m})"),
        _ => context,
    }
}

impl Client {
    /// Creates `bindings` (existing ones are left as they are); one outcome per binding.
    pub async fn create_acls(&self, bindings: &[AclBinding]) -> Result<Vec<Result<()>>> {
        let conn = self.any_connection().await?;
        let creations = bindings
            .iter()
            .map(|b| {
                AclCreation::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(text(&b.resource_name))
                    .with_resource_pattern_type(b.pattern_type.code())
                    .with_principal(text(&b.principal))
                    .with_host(text(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code())
            })
            .collect();
        let request = CreateAclsRequest::default().with_creations(creations);
        let response = conn.call(&request, ACL_VERSIONS).await?;
        if response.results.len() != bindings.len() {
            return Err(ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "CreateAcls",
                message: format!(
                    "{} results for {} creations",
                    response.results.len(),
                    bindings.len()
                ),
            });
        }
        Ok(response
            .results
            .iter()
            .zip(bindings)
            .map(|(r, b)| {
                let context = format!(
                    "creating ACL {} {} {} on {} {}",
                    b.permission.name(),
                    b.operation.name(),
                    b.principal,
                    b.resource_type.name(),
                    b.resource_name
                );
                match ClientError::kafka(with_message(context, &r.error_message), r.error_code) {
                    Some(e) => Err(e),
                    None => Ok(()),
                }
            })
            .collect())
    }

    /// The bindings `filter` matches.
    pub async fn describe_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>> {
        let conn = self.any_connection().await?;
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(opt_text(&filter.resource_name))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(opt_text(&filter.principal))
            .with_host_filter(opt_text(&filter.host))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code());
        let response = conn.call(&request, ACL_VERSIONS).await?;
        let context = with_message("describing ACLs".into(), &response.error_message);
        if let Some(e) = ClientError::kafka(context, response.error_code) {
            return Err(e);
        }
        Ok(response
            .resources
            .iter()
            .flat_map(|r| {
                let resource = (r.resource_type, &r.resource_name, r.pattern_type);
                r.acls.iter().map(move |a| {
                    binding(
                        resource,
                        &a.principal,
                        &a.host,
                        a.operation,
                        a.permission_type,
                    )
                })
            })
            .collect())
    }

    /// Deletes every binding a filter matches; for each filter, the bindings it deleted.
    pub async fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Result<Vec<AclBinding>>>> {
        let conn = self.any_connection().await?;
        let request = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type.code())
                        .with_resource_name_filter(opt_text(&f.resource_name))
                        .with_pattern_type_filter(f.pattern_type.code())
                        .with_principal_filter(opt_text(&f.principal))
                        .with_host_filter(opt_text(&f.host))
                        .with_operation(f.operation.code())
                        .with_permission_type(f.permission.code())
                })
                .collect(),
        );
        let response = conn.call(&request, ACL_VERSIONS).await?;
        if response.filter_results.len() != filters.len() {
            return Err(ClientError::Protocol {
                addr: conn.addr().to_string(),
                api: "DeleteAcls",
                message: format!(
                    "{} results for {} filters",
                    response.filter_results.len(),
                    filters.len()
                ),
            });
        }
        Ok(response
            .filter_results
            .iter()
            .map(|r| {
                let context = with_message("deleting ACLs".into(), &r.error_message);
                if let Some(e) = ClientError::kafka(context, r.error_code) {
                    return Err(e);
                }
                Ok(r.matching_acls
                    .iter()
                    .filter(|m| m.error_code == 0)
                    .map(|m| {
                        binding(
                            (m.resource_type, &m.resource_name, m.pattern_type),
                            &m.principal,
                            &m.host,
                            m.operation,
                            m.permission_type,
                        )
                    })
                    .collect())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_keep_unknown_ones() {
        for code in -1..20 {
            assert_eq!(AclOperation::from_code(code).code(), code);
            assert_eq!(AclResourceType::from_code(code).code(), code);
            assert_eq!(AclPatternType::from_code(code).code(), code);
            assert_eq!(AclPermission::from_code(code).code(), code);
        }
        assert_eq!(AclOperation::from_code(10).name(), "DESCRIBE_CONFIGS");
        assert_eq!(AclPatternType::from_code(9).name(), "UNKNOWN(9)");
    }

    #[test]
    fn a_binding_filters_for_itself() {
        let b = AclBinding::new(
            AclResourceType::Topic,
            "sensors.",
            "User:alice",
            AclOperation::Write,
            AclPermission::Allow,
        )
        .with_pattern(AclPatternType::Prefixed);
        let f = b.to_filter();
        assert_eq!(f.pattern_type, AclPatternType::Prefixed);
        assert_eq!(f.principal.as_deref(), Some("User:alice"));
        assert_eq!(f.host.as_deref(), Some("*"));
    }
}
