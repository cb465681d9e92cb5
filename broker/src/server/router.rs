//! The table of served APIs — from which ApiVersions is built — and dispatch of a decoded
//! request to its handler.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind};
use kafka_protocol::protocol::Encodable;

use crate::handlers::{self, Ctx, Session};
use crate::protocol::request::{self, DecodeError, RawRequest, encode_response};

/// One served API. `advertised_min` may be lower than `min`: Produce is advertised from v0
/// because librdkafka disables compression otherwise (KAFKA-18659), while requests below
/// `min` are refused.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub key: ApiKey,
    pub advertised_min: i16,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16) -> Api {
    Api {
        key,
        advertised_min: min,
        min,
        max,
    }
}

/// Served APIs and versions. The maxima match one Kafka release line (3.7) so clients that
/// infer the broker version from them (kafka-python) infer a coherent one.
pub const SUPPORTED: &[Api] = &[
    Api {
        key: ApiKey::Produce,
        advertised_min: 0,
        min: 3,
        max: 10,
    },
    api(ApiKey::Fetch, 4, 16),
    api(ApiKey::ListOffsets, 1, 8),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 4),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 2),
    api(ApiKey::AlterPartitionReassignments, 0, 1),
    api(ApiKey::ListPartitionReassignments, 0, 0),
    api(ApiKey::DescribeLogDirs, 1, 4),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 9),
    api(ApiKey::OffsetFetch, 1, 9),
    api(ApiKey::OffsetDelete, 0, 0),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    // v0 (no pattern type) was dropped by Kafka 4.0 and is not decoded by the codec.
    api(ApiKey::CreateAcls, 1, 3),
    api(ApiKey::DescribeAcls, 1, 3),
    api(ApiKey::DeleteAcls, 1, 3),
    // SASL (KIP-43, KIP-152): served during authentication on SASL listeners; anywhere else
    // they answer ILLEGAL_SASL_STATE, as Kafka does. See server::sasl.
    api(ApiKey::SaslHandshake, 0, 1),
    api(ApiKey::SaslAuthenticate, 0, 2),
    api(ApiKey::DescribeUserScramCredentials, 0, 0),
    api(ApiKey::AlterUserScramCredentials, 0, 0),
];

pub fn lookup(key: ApiKey) -> Option<&'static Api> {
    SUPPORTED.iter().find(|a| a.key == key)
}

/// Why a request ends its connection.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{api:?} v{version} is not supported (served: v{min}..v{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("{0:?} is not served by Runnel")]
    UnsupportedApi(ApiKey),
    #[error("an acks=0 produce failed with error code {error_code}")]
    Acks0Failed { error_code: i16 },
    #[error("the request's handler stopped without an answer")]
    Abandoned,
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

fn encode<M: Encodable>(raw: &RawRequest, body: &M) -> Result<Option<Bytes>, RouteError> {
    encode_response(raw.api_key, raw.version(), raw.header.correlation_id, body)
        .map(Some)
        .map_err(|e| RouteError::Encode {
            api: raw.api_key,
            version: raw.version(),
            reason: e.to_string(),
        })
}

/// A request ready for its handler.
#[derive(Debug)]
pub struct Request {
    pub raw: RawRequest,
    pub body: RequestKind,
}

/// Turns one frame into a decoded request, or says why the connection must close. Pure: no
/// I/O, no shared state, so it is what the fuzz target exercises.
pub fn decode(frame: Bytes) -> Result<Request, RouteError> {
    let (key, version, _) = request::peek_prefix(&frame).ok_or(DecodeError::Short(frame.len()))?;
    let api_key = ApiKey::try_from(key).map_err(|()| DecodeError::UnknownApi(key))?;
    let api = lookup(api_key).ok_or(RouteError::UnsupportedApi(api_key))?;
    if version < api.min || version > api.max {
        return Err(RouteError::UnsupportedVersion {
            api: api_key,
            version,
            min: api.min,
            max: api.max,
        });
    }
    let raw = request::parse(frame)?;
    let mut body = raw.body.clone();
    let decoded =
        std::panic::catch_unwind(move || RequestKind::decode(api_key, &mut body, version));
    let body = match decoded {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return Err(malformed(&raw, e.to_string()).into()),
        // The codec should never panic; if it does, only this connection pays.
        Err(_) => return Err(malformed(&raw, "decoder panicked".into()).into()),
    };
    Ok(Request { raw, body })
}

fn malformed(raw: &RawRequest, reason: String) -> DecodeError {
    DecodeError::Body {
        api: raw.api_key,
        version: raw.version(),
        correlation_id: raw.header.correlation_id,
        reason,
    }
}

/// Queues a produce request's batches now and returns the future of its response frame
/// (`None` for acks=0), authorized for `session`. See [`handlers::produce::start`].
pub fn start_produce_as(
    ctx: &Ctx,
    session: &Session,
    raw: RawRequest,
    req: ProduceRequest,
) -> impl Future<Output = Result<Option<Bytes>, RouteError>> + Send + 'static {
    let acks = req.acks;
    let response = handlers::produce::start(ctx, session, req);
    async move {
        let response = response.await;
        if acks != 0 {
            return encode(&raw, &response);
        }
        // acks=0 has no response to carry an error: like Kafka, close the connection so the
        // client notices and refreshes its metadata.
        let failed = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.error_code != 0);
        match failed {
            None => Ok(None),
            Some(p) => Err(RouteError::Acks0Failed {
                error_code: p.error_code,
            }),
        }
    }
}

/// Runs the handler for a decoded request. `Ok(None)`: no response is due (acks=0 produce).
pub async fn dispatch(
    ctx: &Ctx,
    session: &Session,
    req: Request,
) -> Result<Option<Bytes>, RouteError> {
    let Request { raw, body } = req;
    let v = raw.version();
    match body {
        RequestKind::ApiVersions(_) => encode(&raw, &handlers::api_versions::handle()),
        RequestKind::Metadata(req) => encode(
            &raw,
            &handlers::metadata::handle(ctx, session, req, v).await,
        ),
        RequestKind::Produce(req) => start_produce_as(ctx, session, raw, req).await,
        RequestKind::Fetch(req) => {
            encode(&raw, &handlers::fetch::handle(ctx, session, req, v).await)
        }
        RequestKind::ListOffsets(req) => encode(
            &raw,
            &handlers::list_offsets::handle(ctx, session, req, v).await,
        ),
        RequestKind::CreateTopics(req) => {
            encode(&raw, &handlers::topics::create(ctx, session, req, v).await)
        }
        RequestKind::DeleteTopics(req) => {
            encode(&raw, &handlers::topics::delete(ctx, session, req, v).await)
        }
        RequestKind::CreatePartitions(req) => encode(
            &raw,
            &handlers::topics::create_partitions(ctx, session, req).await,
        ),
        RequestKind::DeleteRecords(req) => encode(
            &raw,
            &handlers::delete_records::handle(ctx, session, req).await,
        ),
        RequestKind::DescribeConfigs(req) => {
            encode(&raw, &handlers::configs::describe(ctx, session, req))
        }
        RequestKind::IncrementalAlterConfigs(req) => {
            encode(&raw, &handlers::configs::alter(ctx, session, req).await)
        }
        RequestKind::FindCoordinator(req) => encode(
            &raw,
            &handlers::groups::find_coordinator(ctx, session, req, v),
        ),
        RequestKind::JoinGroup(req) => {
            let client_id = raw.header.client_id.as_ref().map(|c| c.to_string());
            let client_id = client_id.unwrap_or_default();
            let response = handlers::groups::join(ctx, session, req, v, &client_id).await;
            encode(&raw, &response)
        }
        RequestKind::SyncGroup(req) => {
            encode(&raw, &handlers::groups::sync(ctx, session, req, v).await)
        }
        RequestKind::Heartbeat(req) => {
            encode(&raw, &handlers::groups::heartbeat(ctx, session, req))
        }
        RequestKind::LeaveGroup(req) => {
            encode(&raw, &handlers::groups::leave(ctx, session, req, v))
        }
        RequestKind::ListGroups(req) => encode(&raw, &handlers::groups::list(ctx, session, req, v)),
        RequestKind::DescribeGroups(req) => {
            encode(&raw, &handlers::groups::describe(ctx, session, req, v))
        }
        RequestKind::DeleteGroups(req) => {
            encode(&raw, &handlers::groups::delete(ctx, session, req).await)
        }
        RequestKind::OffsetCommit(req) => {
            encode(&raw, &handlers::offsets::commit(ctx, session, req, v).await)
        }
        RequestKind::OffsetFetch(req) => {
            encode(&raw, &handlers::offsets::fetch(ctx, session, req, v).await)
        }
        RequestKind::OffsetDelete(req) => {
            encode(&raw, &handlers::offsets::delete(ctx, session, req).await)
        }
        RequestKind::InitProducerId(req) => encode(
            &raw,
            &handlers::init_producer_id::handle(ctx, session, req).await,
        ),
        RequestKind::DescribeCluster(req) => encode(
            &raw,
            &handlers::describe_cluster::handle(ctx, session, req, v),
        ),
        RequestKind::AlterPartitionReassignments(req) => encode(
            &raw,
            &handlers::reassignments::alter(ctx, session, req).await,
        ),
        RequestKind::ListPartitionReassignments(req) => {
            encode(&raw, &handlers::reassignments::list(ctx, session, req))
        }
        RequestKind::DescribeLogDirs(req) => encode(
            &raw,
            &handlers::describe_log_dirs::handle(ctx, session, req, v),
        ),
        RequestKind::CreateAcls(req) => {
            encode(&raw, &handlers::acls::create(ctx, session, req).await)
        }
        RequestKind::DescribeAcls(req) => {
            encode(&raw, &handlers::acls::describe(ctx, session, req))
        }
        RequestKind::DeleteAcls(req) => {
            encode(&raw, &handlers::acls::delete(ctx, session, req).await)
        }
        RequestKind::SaslHandshake(_) => encode(&raw, &handlers::sasl::handshake_out_of_place()),
        RequestKind::SaslAuthenticate(_) => {
            encode(&raw, &handlers::sasl::authenticate_out_of_place())
        }
        RequestKind::DescribeUserScramCredentials(req) => {
            encode(&raw, &handlers::scram_users::describe(ctx, session, req))
        }
        RequestKind::AlterUserScramCredentials(req) => {
            encode(&raw, &handlers::scram_users::alter(ctx, session, req).await)
        }
        _ => Err(RouteError::UnsupportedApi(raw.api_key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(api_key: i16, version: i16, body: &[u8]) -> Bytes {
        let mut f = Vec::new();
        f.extend_from_slice(&api_key.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes()); // null client_id (header v1)
        f.extend_from_slice(body);
        Bytes::from(f)
    }

    #[test]
    fn hostile_array_length_is_a_decode_error_not_an_abort() {
        // Metadata v0 whose topic array claims i32::MAX entries in a 4-byte body.
        let f = frame(ApiKey::Metadata as i16, 0, &i32::MAX.to_be_bytes());
        assert!(matches!(decode(f), Err(RouteError::Decode(_))));
    }

    #[test]
    fn unknown_api_and_versions_are_refused() {
        assert!(matches!(
            decode(frame(9999, 0, &[])),
            Err(RouteError::Decode(_))
        ));
        let too_new = frame(ApiKey::Metadata as i16, 99, &[]);
        assert!(matches!(
            decode(too_new),
            Err(RouteError::UnsupportedVersion { .. })
        ));
        let unserved = frame(ApiKey::EndTxn as i16, 0, &[]);
        assert!(matches!(
            decode(unserved),
            Err(RouteError::UnsupportedApi(_))
        ));
        assert!(matches!(
            decode(Bytes::from_static(&[0, 3])),
            Err(RouteError::Decode(_))
        ));
    }

    #[test]
    fn every_served_api_is_decodable_at_its_versions() {
        for api in SUPPORTED {
            let crate_range = api.key.valid_versions();
            assert!(
                crate_range.min <= api.min && api.max <= crate_range.max,
                "{:?} {}..{} outside codec range {crate_range}",
                api.key,
                api.min,
                api.max
            );
        }
    }
}
