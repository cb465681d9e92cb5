//! Request headers and response frames. A frame body is `api_key i16, api_version i16,
//! correlation_id i32, …header…, body`; the header version depends on the API and version.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Why a request frame could not be understood. Every variant closes the connection
/// (Kafka does the same); the response would have nowhere to go.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    Short(usize),
    #[error("unknown api_key {0}")]
    UnknownApi(i16),
    #[error("malformed {api:?} v{version} request header: {reason}")]
    Header {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("malformed {api:?} v{version} request (correlation_id {correlation_id}): {reason}")]
    Body {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// The parsed header plus the undecoded body of one request.
#[derive(Debug)]
pub struct RawRequest {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

impl RawRequest {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
}

/// Peeks the fixed prefix every request starts with: `(api_key, api_version, correlation_id)`.
pub fn peek_prefix(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    Some((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

/// Splits a frame into its header and body. The caller has checked that the version is one
/// we serve, so the header version is known.
pub fn parse(mut frame: Bytes) -> Result<RawRequest, DecodeError> {
    let (key, version, _) = peek_prefix(&frame).ok_or(DecodeError::Short(frame.len()))?;
    let api_key = ApiKey::try_from(key).map_err(|()| DecodeError::UnknownApi(key))?;
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| DecodeError::Header {
            api: api_key,
            version,
            reason: e.to_string(),
        })?;
    Ok(RawRequest {
        api_key,
        header,
        body: frame,
    })
}

/// Encodes a response frame: length, response header of the right version, body.
pub fn encode_response<M: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) -> anyhow::Result<Bytes> {
    // ApiVersions responses always use header v0 so clients can parse them before they know
    // which versions the broker speaks.
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size)?);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}
