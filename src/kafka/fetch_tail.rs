//! The top-level tagged fields of a Fetch answer, its last bytes: KIP-951 NodeEndpoints
//! (tag 0) decoded, any other field kept as its bytes. The proxy rewrites the
//! NodeEndpoints of an answer by encoding this tail anew, so the megabytes of records
//! before it go back as the broker sent them.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::NodeEndpoint;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::frame::LEN_PREFIX;
use super::frame_writer::OutFrame;
use super::record_codec::put_uvarint;
use super::wire_scan::{Reader, ScanError};

/// Tag of NodeEndpoints among a Fetch answer's top-level tagged fields.
const NODE_ENDPOINTS_TAG: u32 = 0;
/// First Fetch version with NodeEndpoints.
const NODE_ENDPOINTS_SINCE: i16 = 16;

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("the tagged fields of a Fetch answer are malformed: {0}")]
    Malformed(#[from] ScanError),
    #[error("a NodeEndpoint of a Fetch answer does not decode: {0}")]
    Endpoint(String),
    #[error("the tagged fields of a Fetch answer hold NodeEndpoints twice")]
    Repeated,
    #[error("a NodeEndpoint of a Fetch answer does not encode: {0}")]
    Encode(String),
    #[error("a Fetch answer with its tail rewritten would be longer than a frame can be")]
    TooLong,
}

/// `frame` (a whole response frame, length prefix first) with its bytes from `at` on
/// replaced by `tail`: a new length prefix, the frame's own bytes up to `at`, the tail.
pub fn replace_end(frame: &Bytes, at: usize, tail: Bytes) -> Result<OutFrame, TailError> {
    if !(LEN_PREFIX..=frame.len()).contains(&at) {
        return Err(ScanError::Truncated.into());
    }
    let len = i32::try_from(at - LEN_PREFIX + tail.len()).map_err(|_| TailError::TooLong)?;
    Ok(OutFrame::Parts([
        Bytes::copy_from_slice(&len.to_be_bytes()),
        frame.slice(LEN_PREFIX..at),
        tail,
    ]))
}

/// One tagged field, in the order the answer had them.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    NodeEndpoints,
    Other { tag: u32, value: Bytes },
}

/// The tagged fields ending a Fetch answer of a flexible version.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchTail {
    fields: Vec<Field>,
    pub node_endpoints: Vec<NodeEndpoint>,
}

impl FetchTail {
    /// Reads `tail`, which must be exactly the tagged fields (`FetchLayout::tail_at` to
    /// the end of the body).
    pub fn decode(tail: &[u8], version: i16) -> Result<Self, TailError> {
        let mut r = Reader { buf: tail };
        let count = r.uvarint()?;
        let mut fields = Vec::new();
        let mut node_endpoints = None;
        for _ in 0..count {
            let tag = r.uvarint()?;
            let size = r.uvarint()? as usize;
            let value = r.take(size)?;
            if tag == NODE_ENDPOINTS_TAG && version >= NODE_ENDPOINTS_SINCE {
                if node_endpoints.is_some() {
                    return Err(TailError::Repeated);
                }
                node_endpoints = Some(decode_endpoints(value, version)?);
                fields.push(Field::NodeEndpoints);
            } else {
                let value = Bytes::copy_from_slice(value);
                fields.push(Field::Other { tag, value });
            }
        }
        if !r.buf.is_empty() {
            return Err(ScanError::Malformed.into());
        }
        Ok(Self {
            fields,
            node_endpoints: node_endpoints.unwrap_or_default(),
        })
    }

    /// The tagged fields again, in their order, with the NodeEndpoints as they are now.
    pub fn encode(&self, version: i16) -> Result<Bytes, TailError> {
        let mut out = Vec::new();
        put_uvarint(&mut out, self.fields.len() as u64);
        for field in &self.fields {
            match field {
                Field::NodeEndpoints => {
                    let value = encode_endpoints(&self.node_endpoints, version)?;
                    put_uvarint(&mut out, u64::from(NODE_ENDPOINTS_TAG));
                    put_uvarint(&mut out, value.len() as u64);
                    out.extend_from_slice(&value);
                }
                Field::Other { tag, value } => {
                    put_uvarint(&mut out, u64::from(*tag));
                    put_uvarint(&mut out, value.len() as u64);
                    out.extend_from_slice(value);
                }
            }
        }
        Ok(Bytes::from(out))
    }
}

/// A compact array of NodeEndpoint, the whole of `value`.
fn decode_endpoints(value: &[u8], version: i16) -> Result<Vec<NodeEndpoint>, TailError> {
    let mut r = Reader { buf: value };
    let count = r.array_len(true)?.ok_or(ScanError::Malformed)?;
    let mut buf = r.buf;
    let mut endpoints = Vec::with_capacity(count);
    for _ in 0..count {
        let endpoint = NodeEndpoint::decode(&mut buf, version)
            .map_err(|e| TailError::Endpoint(e.to_string()))?;
        endpoints.push(endpoint);
    }
    if !buf.is_empty() {
        return Err(ScanError::Malformed.into());
    }
    Ok(endpoints)
}

fn encode_endpoints(endpoints: &[NodeEndpoint], version: i16) -> Result<Vec<u8>, TailError> {
    let encode_err = |e: anyhow::Error| TailError::Encode(e.to_string());
    let mut out = Vec::new();
    put_uvarint(&mut out, endpoints.len() as u64 + 1);
    let mut body = bytes::BytesMut::new();
    for endpoint in endpoints {
        endpoint.encode(&mut body, version).map_err(encode_err)?;
    }
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::fetch_scan::scan_fetch_response;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{BrokerId, FetchResponse};
    use kafka_protocol::protocol::StrBytes;

    fn endpoint(id: i32, host: &str, port: i32) -> NodeEndpoint {
        NodeEndpoint::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(host.to_string()))
            .with_port(port)
            .with_rack(Some(StrBytes::from_static_str("rack-a")))
    }

    fn answer(version: i16) -> FetchResponse {
        let partition = PartitionData::default()
            .with_partition_index(3)
            .with_high_watermark(42)
            .with_records(Some(Bytes::from(vec![7u8; 5000])));
        let mut response = FetchResponse::default()
            .with_responses(vec![FetchableTopicResponse::default()
                .with_topic_id(uuid::Uuid::from_u128(9))
                .with_partitions(vec![partition])])
            .with_node_endpoints(vec![
                endpoint(1, "b1.internal", 9092),
                endpoint(2, "b2", 9093),
            ]);
        response
            .unknown_tagged_fields
            .insert(5, Bytes::from_static(b"kept"));
        response.session_id = if version >= 7 { 11 } else { 0 };
        response
    }

    fn body(response: &FetchResponse, version: i16) -> Bytes {
        let mut out = bytes::BytesMut::new();
        response.encode(&mut out, version).unwrap();
        out.freeze()
    }

    #[test]
    fn a_rewritten_tail_after_the_untouched_head_decodes_as_the_rewritten_answer() {
        for version in 16..=18 {
            let original = answer(version);
            let bytes = body(&original, version);
            let layout = scan_fetch_response(&bytes, version, |_, _, _| {}).unwrap();
            assert!(layout.node_endpoints);
            let mut tail = FetchTail::decode(&bytes[layout.tail_at..], version).unwrap();
            assert_eq!(tail.node_endpoints, original.node_endpoints);
            for node in &mut tail.node_endpoints {
                node.host = StrBytes::from_static_str("proxy.example.test");
                node.port += 10_000;
            }
            let mut spliced = bytes[..layout.tail_at].to_vec();
            spliced.extend_from_slice(&tail.encode(version).unwrap());

            let mut expected = original.clone();
            for node in &mut expected.node_endpoints {
                node.host = StrBytes::from_static_str("proxy.example.test");
                node.port += 10_000;
            }
            let decoded = FetchResponse::decode(&mut Bytes::from(spliced), version).unwrap();
            assert_eq!(decoded, expected, "v{version}");
        }
    }

    /// The body of `answer(17)` and where its tagged fields begin.
    fn v17() -> (Bytes, usize) {
        let bytes = body(&answer(17), 17);
        let layout = scan_fetch_response(&bytes, 17, |_, _, _| {}).unwrap();
        (bytes, layout.tail_at)
    }

    #[test]
    fn an_unchanged_tail_encodes_to_the_same_bytes() {
        let version = 17;
        let (bytes, tail_at) = v17();
        let tail = &bytes[tail_at..];
        let again = FetchTail::decode(tail, version)
            .unwrap()
            .encode(version)
            .unwrap();
        assert_eq!(&again[..], tail);
    }

    #[test]
    fn a_malformed_tail_is_refused() {
        let version = 17;
        let (bytes, tail_at) = v17();
        let tail = &bytes[tail_at..];
        // Cut short, or with a byte left over.
        assert!(FetchTail::decode(&tail[..tail.len() - 1], version).is_err());
        let mut longer = tail.to_vec();
        longer.push(0);
        assert!(FetchTail::decode(&longer, version).is_err());
        // NodeEndpoints twice.
        let mut twice = vec![2u8];
        let field = &tail[1..];
        let endpoints_field_len = field.len() - (2 + 4); // the kept field: tag, size, "kept"
        twice.extend_from_slice(&field[..endpoints_field_len]);
        twice.extend_from_slice(&field[..endpoints_field_len]);
        assert!(matches!(
            FetchTail::decode(&twice, version),
            Err(TailError::Repeated)
        ));
        // A count of endpoints beyond the bytes.
        assert!(FetchTail::decode(&[1, 0, 2, 0x7f, 0], version).is_err());
    }
}
