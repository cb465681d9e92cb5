//! The table of served APIs — from which ApiVersions is built — and dispatch of a decoded
//! request to its handler.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest, FetchRequest,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
};
use kafka_protocol::protocol::Encodable;

use crate::handlers::{self, Ctx};
use crate::protocol::request::{DecodeError, RawRequest, decode_body, encode_response};

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
    api(ApiKey::DescribeCluster, 0, 1),
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

/// Runs the handler for `raw`. `Ok(None)`: no response is due (acks=0 produce).
pub async fn dispatch(ctx: &Ctx, raw: RawRequest) -> Result<Option<Bytes>, RouteError> {
    let v = raw.version();
    match raw.api_key {
        ApiKey::ApiVersions => encode(&raw, &handlers::api_versions::handle()),
        ApiKey::Metadata => {
            let req: MetadataRequest = decode_body(&raw)?;
            encode(&raw, &handlers::metadata::handle(ctx, req, v).await)
        }
        ApiKey::Produce => {
            let req: ProduceRequest = decode_body(&raw)?;
            let acks = req.acks;
            let resp = handlers::produce::handle(ctx, req).await;
            if acks == 0 {
                Ok(None)
            } else {
                encode(&raw, &resp)
            }
        }
        ApiKey::Fetch => {
            let req: FetchRequest = decode_body(&raw)?;
            encode(&raw, &handlers::fetch::handle(ctx, req, v).await)
        }
        ApiKey::ListOffsets => {
            let req: ListOffsetsRequest = decode_body(&raw)?;
            encode(&raw, &handlers::list_offsets::handle(ctx, req, v).await)
        }
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = decode_body(&raw)?;
            encode(&raw, &handlers::topics::create(ctx, req).await)
        }
        ApiKey::DeleteTopics => {
            let req: DeleteTopicsRequest = decode_body(&raw)?;
            encode(&raw, &handlers::topics::delete(ctx, req, v).await)
        }
        ApiKey::CreatePartitions => {
            let req: CreatePartitionsRequest = decode_body(&raw)?;
            encode(&raw, &handlers::topics::create_partitions(ctx, req).await)
        }
        ApiKey::DeleteRecords => {
            let req: DeleteRecordsRequest = decode_body(&raw)?;
            encode(&raw, &handlers::delete_records::handle(ctx, req).await)
        }
        ApiKey::DescribeConfigs => {
            let req: DescribeConfigsRequest = decode_body(&raw)?;
            encode(&raw, &handlers::configs::describe(ctx, req))
        }
        ApiKey::IncrementalAlterConfigs => {
            let req: IncrementalAlterConfigsRequest = decode_body(&raw)?;
            encode(&raw, &handlers::configs::alter(ctx, req).await)
        }
        ApiKey::DescribeCluster => {
            let req: DescribeClusterRequest = decode_body(&raw)?;
            encode(&raw, &handlers::describe_cluster::handle(ctx, req))
        }
        other => Err(RouteError::UnsupportedApi(other)),
    }
}
