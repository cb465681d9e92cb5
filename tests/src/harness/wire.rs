//! Request and response bytes for [`super::raw`], made by the `kafka-protocol` crate: a frame is
//! an `INT32` length followed by that many bytes, a request is a header followed by a body, and
//! the header versions come from the crate (`ApiKey::request_header_version` and
//! `ApiKey::response_header_version`, which answers v0 for every ApiVersions response).
//!
//! Nothing here writes Kafka fields by hand; tests that send deliberately broken frames append
//! their own bytes to [`request_header`] or hand them to [`frame`].

use anyhow::{Context, Result, anyhow, ensure};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// The `client_id` of every raw request.
pub const CLIENT_ID: &str = "runnel-raw-test";

/// Prefixes `payload` with its INT32 length.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// The request header for `api_key` at `api_version`, in the header version the crate assigns
/// to that pair; a body (or, for broken-frame tests, anything else) is appended to it.
pub fn request_header(api_key: ApiKey, api_version: i16, correlation_id: i32) -> Result<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = Vec::new();
    header
        .encode(&mut buf, api_key.request_header_version(api_version))
        .with_context(|| format!("encoding a {api_key:?} v{api_version} request header"))?;
    Ok(buf)
}

/// Header and body of `request` at `version` (without the length prefix).
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> Result<Vec<u8>> {
    let api_key = api_key::<R>()?;
    let mut buf = request_header(api_key, version, correlation_id)?;
    request
        .encode(&mut buf, version)
        .with_context(|| format!("encoding a {api_key:?} v{version} request"))?;
    Ok(buf)
}

/// Decodes a response frame (without its length prefix) to a `version` request of type `R`,
/// checking the correlation id and that nothing follows the body.
pub fn decode_response<R: Request>(
    frame: &[u8],
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    let api_key = api_key::<R>()?;
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
        .with_context(|| format!("decoding a {api_key:?} v{version} response header"))?;
    ensure!(
        header.correlation_id == correlation_id,
        "correlation id {}, expected {correlation_id}",
        header.correlation_id
    );
    let response = R::Response::decode(&mut buf, version)
        .with_context(|| format!("decoding a {api_key:?} v{version} response"))?;
    ensure!(
        buf.is_empty(),
        "{} unexpected bytes after the {api_key:?} v{version} response",
        buf.len()
    );
    Ok(response)
}

fn api_key<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|()| anyhow!("api key {} is unknown", R::KEY))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

    use super::*;

    fn api_versions_v0_response(correlation_id: i32) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, 0)?;
        ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![
                ApiVersion::default()
                    .with_api_key(18)
                    .with_min_version(0)
                    .with_max_version(4),
            ])
            .encode(&mut buf, 0)?;
        Ok(buf)
    }

    #[test]
    fn given_a_v99_api_versions_header_when_encoding_should_use_the_flexible_header() -> Result<()>
    {
        let bytes = request_header(ApiKey::ApiVersions, 99, 7)?;
        let header = RequestHeader::decode(&mut bytes.as_slice(), 2)?;
        assert_eq!(header.request_api_key, ApiKey::ApiVersions as i16);
        assert_eq!(header.request_api_version, 99);
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some(CLIENT_ID));
        Ok(())
    }

    #[test]
    fn given_a_v0_api_list_when_decoding_should_return_entries() -> Result<()> {
        let response = decode_response::<ApiVersionsRequest>(&api_versions_v0_response(9)?, 0, 9)?;
        assert_eq!(response.error_code, 35);
        let apis: Vec<_> = response
            .api_keys
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        assert_eq!(apis, vec![(18, 0, 4)]);
        Ok(())
    }

    #[test]
    fn given_trailing_bytes_or_another_correlation_id_when_decoding_should_fail() -> Result<()> {
        let mut trailing = api_versions_v0_response(9)?;
        trailing.push(0);
        assert!(decode_response::<ApiVersionsRequest>(&trailing, 0, 9).is_err());
        let other = api_versions_v0_response(10)?;
        assert!(decode_response::<ApiVersionsRequest>(&other, 0, 9).is_err());
        Ok(())
    }
}
