//! Decode and encode message bodies for the few frames that must be looked into.
//! Everything else travels as raw bytes (see `frame`).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::frame::{RequestFrame, LEN_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode {api:?} v{version}: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(transparent)]
    Frame(#[from] super::frame::FrameError),
}

fn decode_err(api: ApiKey, version: i16, e: impl ToString) -> CodecError {
    CodecError::Decode {
        api,
        version,
        reason: e.to_string(),
    }
}

fn encode_err(api: ApiKey, version: i16, e: impl ToString) -> CodecError {
    CodecError::Encode {
        api,
        version,
        reason: e.to_string(),
    }
}

/// Decodes the body of a request frame.
pub fn decode_request<T: Decodable>(frame: &RequestFrame) -> Result<T, CodecError> {
    let mut body = frame.body()?;
    T::decode(&mut body, frame.api_version)
        .map_err(|e| decode_err(frame.api_key, frame.api_version, e))
}

/// A request frame with the original header bytes and a new body.
pub fn encode_request<T: Encodable>(frame: &RequestFrame, body: &T) -> Result<Bytes, CodecError> {
    let header = frame.header_bytes()?;
    let (api, version) = (frame.api_key, frame.api_version);
    let size = body
        .compute_size(version)
        .map_err(|e| encode_err(api, version, e))?;
    let mut out = BytesMut::with_capacity(LEN_PREFIX + header.len() + size);
    out.put_i32(frame_len(header.len() + size, api, version)?);
    out.put_slice(&header);
    body.encode(&mut out, version)
        .map_err(|e| encode_err(api, version, e))?;
    Ok(out.freeze())
}

/// Length of the response header (after the length prefix) for this API and version.
fn response_header_len(frame: &Bytes, api: ApiKey, version: i16) -> Result<usize, CodecError> {
    let mut rest = frame.slice(LEN_PREFIX..);
    let before = rest.len();
    ResponseHeader::decode(&mut rest, api.response_header_version(version))
        .map_err(|e| decode_err(api, version, e))?;
    Ok(before - rest.len())
}

/// Decodes the body of a response frame (length prefix included).
pub fn decode_response<T: Decodable>(
    frame: &Bytes,
    api: ApiKey,
    version: i16,
) -> Result<T, CodecError> {
    let start = LEN_PREFIX + response_header_len(frame, api, version)?;
    let mut body = frame.slice(start..);
    T::decode(&mut body, version).map_err(|e| decode_err(api, version, e))
}

/// The body of a response frame (length prefix and header skipped), sharing its bytes.
pub fn response_body(frame: &Bytes, api: ApiKey, version: i16) -> Result<Bytes, CodecError> {
    let start = LEN_PREFIX + response_header_len(frame, api, version)?;
    Ok(frame.slice(start.min(frame.len())..))
}

/// The first i16 of a response body: the top-level error code of ApiVersions, peeked
/// before decoding because an UNSUPPORTED_VERSION answer is always v0-formatted.
pub fn peek_response_error(frame: &Bytes, api: ApiKey, version: i16) -> Option<i16> {
    let start = LEN_PREFIX + response_header_len(frame, api, version).ok()?;
    let raw: [u8; 2] = frame.get(start..start + 2)?.try_into().ok()?;
    Some(i16::from_be_bytes(raw))
}

/// A whole response frame: length prefix, header for this API/version, body.
pub fn encode_response<T: Encodable>(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    body: &T,
) -> Result<Bytes, CodecError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let header_size = header
        .compute_size(header_version)
        .map_err(|e| encode_err(api, version, e))?;
    let body_size = body
        .compute_size(version)
        .map_err(|e| encode_err(api, version, e))?;
    let mut out = BytesMut::with_capacity(LEN_PREFIX + header_size + body_size);
    out.put_i32(frame_len(header_size + body_size, api, version)?);
    header
        .encode(&mut out, header_version)
        .map_err(|e| encode_err(api, version, e))?;
    body.encode(&mut out, version)
        .map_err(|e| encode_err(api, version, e))?;
    Ok(out.freeze())
}

fn frame_len(len: usize, api: ApiKey, version: i16) -> Result<i32, CodecError> {
    i32::try_from(len).map_err(|_| encode_err(api, version, "frame longer than i32::MAX"))
}
