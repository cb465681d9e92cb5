//! CreateAcls, DescribeAcls and DeleteAcls (v1–v3: Kafka 4.0 dropped v0, which had no pattern
//! type). Creating and deleting need ALTER on the cluster, describing needs DESCRIBE on it.
//!
//! A binding that cannot be created gets INVALID_REQUEST with the reason; the others of the
//! request are stored in one durable write. Filters follow Kafka's `AclBindingFilter`: ANY and
//! null match everything, the pattern type MATCH selects what would apply to a resource.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Ctx, Session, str_bytes};
use crate::acl::{AclFilter, Operation, binding};
use crate::log::{AclBinding, StoreError};

/// An error code and its message, for one creation or filter.
type Refusal = (ResponseError, String);

fn cluster_refusal(op: &str) -> Refusal {
    (
        ResponseError::ClusterAuthorizationFailed,
        format!("{op} ACLs needs ALTER on the cluster"),
    )
}

pub async fn create(ctx: &Ctx, session: &Session, req: CreateAclsRequest) -> CreateAclsResponse {
    let outcomes: Vec<Result<(), Refusal>> = if !ctx.acl.allows_cluster(session, Operation::Alter) {
        req.creations
            .iter()
            .map(|_| Err(cluster_refusal("creating")))
            .collect()
    } else {
        store_creations(ctx, req.creations.iter().map(creation_binding).collect()).await
    };
    let results = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(()) => AclCreationResult::default(),
            Err((code, message)) => AclCreationResult::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(&message))),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// Validates and stores the bindings; one outcome per binding, in order.
async fn store_creations(ctx: &Ctx, bindings: Vec<AclBinding>) -> Vec<Result<(), Refusal>> {
    let mut outcomes: Vec<Result<(), Refusal>> = bindings
        .iter()
        .map(|b| binding::validate(b).map_err(|m| (ResponseError::InvalidRequest, m)))
        .collect();
    let valid: Vec<usize> = (0..bindings.len())
        .filter(|&i| outcomes[i].is_ok())
        .collect();
    if valid.is_empty() {
        return outcomes;
    }
    let batch = valid.iter().map(|&i| bindings[i].clone()).collect();
    if ctx.acl.create(batch).await.is_ok() {
        return outcomes;
    }
    // One binding the store refuses (too large to be a key, say) must not sink the others:
    // retry one by one so each gets its own answer.
    for i in valid {
        if let Err(e) = ctx.acl.create(vec![bindings[i].clone()]).await {
            outcomes[i] = Err(store_refusal(&e));
        }
    }
    outcomes
}

fn store_refusal(e: &StoreError) -> Refusal {
    tracing::warn!(error = %e, "cannot store ACL binding");
    (ResponseError::UnknownServerError, e.to_string())
}

fn creation_binding(c: &AclCreation) -> AclBinding {
    AclBinding {
        resource_type: c.resource_type,
        resource_name: c.resource_name.to_string(),
        pattern_type: c.resource_pattern_type,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: c.operation,
        permission_type: c.permission_type,
    }
}

pub fn describe(ctx: &Ctx, session: &Session, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let refused = |(code, message): Refusal| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(&message)))
    };
    if !ctx.acl.allows_cluster(session, Operation::Describe) {
        return refused((
            ResponseError::ClusterAuthorizationFailed,
            "describing ACLs needs DESCRIBE on the cluster".into(),
        ));
    }
    let filter = AclFilter {
        resource_type: req.resource_type_filter,
        resource_name: opt_string(&req.resource_name_filter),
        pattern_type: req.pattern_type_filter,
        principal: opt_string(&req.principal_filter),
        host: opt_string(&req.host_filter),
        operation: req.operation,
        permission_type: req.permission_type,
    };
    if let Err(message) = filter.validate() {
        return refused((ResponseError::InvalidRequest, message));
    }
    DescribeAclsResponse::default().with_resources(by_resource(ctx.acl.describe(&filter)))
}

/// Groups bindings (sorted by resource first, as the store's order is) per resource pattern.
fn by_resource(bindings: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut out: Vec<DescribeAclsResource> = Vec::new();
    for b in bindings {
        let acl = AclDescription::default()
            .with_principal(str_bytes(&b.principal))
            .with_host(str_bytes(&b.host))
            .with_operation(b.operation)
            .with_permission_type(b.permission_type);
        match out.last_mut() {
            Some(r)
                if r.resource_type == b.resource_type
                    && r.pattern_type == b.pattern_type
                    && r.resource_name.as_str() == b.resource_name =>
            {
                r.acls.push(acl)
            }
            _ => out.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(str_bytes(&b.resource_name))
                    .with_pattern_type(b.pattern_type)
                    .with_acls(vec![acl]),
            ),
        }
    }
    out
}

pub async fn delete(ctx: &Ctx, session: &Session, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let filters: Vec<AclFilter> = req.filters.iter().map(delete_filter).collect();
    let outcomes: Vec<Result<Vec<AclBinding>, Refusal>> =
        if !ctx.acl.allows_cluster(session, Operation::Alter) {
            filters
                .iter()
                .map(|_| Err(cluster_refusal("deleting")))
                .collect()
        } else {
            delete_matching(ctx, &filters).await
        };
    let results = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(matched) => DeleteAclsFilterResult::default()
                .with_matching_acls(matched.iter().map(matching_acl).collect()),
            Err((code, message)) => DeleteAclsFilterResult::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(&message))),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

async fn delete_matching(
    ctx: &Ctx,
    filters: &[AclFilter],
) -> Vec<Result<Vec<AclBinding>, Refusal>> {
    let checked: Vec<Result<(), Refusal>> = filters
        .iter()
        .map(|f| f.validate().map_err(|m| (ResponseError::InvalidRequest, m)))
        .collect();
    let valid: Vec<AclFilter> = filters
        .iter()
        .zip(&checked)
        .filter(|(_, c)| c.is_ok())
        .map(|(f, _)| f.clone())
        .collect();
    let mut deleted = match ctx.acl.delete(&valid).await {
        Ok(matched) => Ok(matched.into_iter()),
        Err(e) => Err(store_refusal(&e)),
    };
    checked
        .into_iter()
        .map(|c| {
            c?;
            match &mut deleted {
                Ok(matched) => Ok(matched.next().unwrap_or_default()),
                Err(refusal) => Err(refusal.clone()),
            }
        })
        .collect()
}

fn delete_filter(f: &DeleteAclsFilter) -> AclFilter {
    AclFilter {
        resource_type: f.resource_type_filter,
        resource_name: opt_string(&f.resource_name_filter),
        pattern_type: f.pattern_type_filter,
        principal: opt_string(&f.principal_filter),
        host: opt_string(&f.host_filter),
        operation: f.operation,
        permission_type: f.permission_type,
    }
}

fn matching_acl(b: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type)
        .with_resource_name(str_bytes(&b.resource_name))
        .with_pattern_type(b.pattern_type)
        .with_principal(str_bytes(&b.principal))
        .with_host(str_bytes(&b.host))
        .with_operation(b.operation)
        .with_permission_type(b.permission_type)
}

fn opt_string(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn binding(name: &str, principal: &str) -> AclBinding {
        AclBinding {
            resource_type: 2,
            resource_name: name.into(),
            pattern_type: 3,
            principal: principal.into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
        }
    }

    #[test]
    fn bindings_are_grouped_per_resource_pattern() {
        let mut prefixed = binding("a", "User:x");
        prefixed.pattern_type = 4;
        let grouped = by_resource(vec![
            binding("a", "User:x"),
            binding("a", "User:y"),
            prefixed,
            binding("b", "User:x"),
        ]);
        let shape: Vec<(&str, i8, usize)> = grouped
            .iter()
            .map(|r| (r.resource_name.as_str(), r.pattern_type, r.acls.len()))
            .collect();
        assert_eq!(shape, [("a", 3, 2), ("a", 4, 1), ("b", 3, 1)]);
        for v in 1..=3 {
            let r = DescribeAclsResponse::default().with_resources(grouped.clone());
            r.encode(&mut BytesMut::new(), v).expect("encodes");
            let d = DeleteAclsResponse::default().with_filter_results(vec![
                DeleteAclsFilterResult::default()
                    .with_matching_acls(vec![matching_acl(&binding("a", "User:x"))]),
            ]);
            d.encode(&mut BytesMut::new(), v).expect("encodes");
        }
    }
}
