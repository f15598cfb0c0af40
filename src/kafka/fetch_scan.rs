//! A Fetch response read without decoding it: each partition's topic and record bytes,
//! and whether KIP-951 NodeEndpoints follow, found by stepping over the fields
//! (versions 4 to 18). Nothing is allocated, so the proxy can tell a response it must
//! change from one it forwards untouched for the cost of a walk over its headers; the
//! full decode stays for the responses that need it, and for anything the walk does
//! not accept.

/// What the walk found beside the partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchLayout {
    /// The top-level NodeEndpoints tagged field (v16+) is present.
    pub node_endpoints: bool,
    /// Where the top-level tagged fields begin in the body (flexible versions; the
    /// body's length otherwise): everything before is the same whatever they hold.
    pub tail_at: usize,
}

use super::wire_scan::Reader;
pub use super::wire_scan::{ScanError, ScannedTopic};

/// Oldest and newest versions walked.
const VERSIONS: std::ops::RangeInclusive<i16> = 4..=18;
const FLEXIBLE_SINCE: i16 = 12;
const TOPIC_IDS_SINCE: i16 = 13;
const NODE_ENDPOINTS_SINCE: i16 = 16;
/// Tag of NodeEndpoints among the top-level tagged fields.
const NODE_ENDPOINTS_TAG: u32 = 0;

/// Walks `body` (the response after its header) and calls `partition` with each
/// partition's topic, index and record bytes (None when null).
pub fn scan_fetch_response<'a>(
    body: &'a [u8],
    version: i16,
    mut partition: impl FnMut(ScannedTopic<'a>, i32, Option<&'a [u8]>),
) -> Result<FetchLayout, ScanError> {
    if !VERSIONS.contains(&version) {
        return Err(ScanError::Version(version));
    }
    let flexible = version >= FLEXIBLE_SINCE;
    let mut r = Reader { buf: body };
    r.skip(4)?; // throttle_time_ms
    if version >= 7 {
        r.skip(2 + 4)?; // error_code, session_id
    }
    let topics = r.array_len(flexible)?.unwrap_or(0);
    for _ in 0..topics {
        let topic = r.topic(version >= TOPIC_IDS_SINCE, flexible)?;
        let partitions = r.array_len(flexible)?.unwrap_or(0);
        for _ in 0..partitions {
            let index = r.i32()?;
            // error_code, high_watermark, last_stable_offset
            r.skip(2 + 8 + 8)?;
            if version >= 5 {
                r.skip(8)?; // log_start_offset
            }
            let aborted = r.array_len(flexible)?.unwrap_or(0);
            for _ in 0..aborted {
                r.skip(8 + 8)?; // producer_id, first_offset
                if flexible {
                    r.skip_tagged_fields()?;
                }
            }
            if version >= 11 {
                r.skip(4)?; // preferred_read_replica
            }
            let records = r.bytes(flexible)?;
            if flexible {
                r.skip_tagged_fields()?;
            }
            partition(topic, index, records);
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
    }
    let mut layout = FetchLayout {
        node_endpoints: false,
        tail_at: body.len() - r.buf.len(),
    };
    if flexible {
        let fields = r.uvarint()?;
        for _ in 0..fields {
            let tag = r.uvarint()?;
            let size = r.uvarint()?;
            r.skip(size as usize)?;
            if tag == NODE_ENDPOINTS_TAG && version >= NODE_ENDPOINTS_SINCE {
                layout.node_endpoints = true;
            }
        }
    }
    Ok(layout)
}
