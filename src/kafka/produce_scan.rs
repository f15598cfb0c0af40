//! A Produce request read without decoding it: the topics it writes to (names up to
//! v12, ids from v13), found by stepping over its fields (versions 3 to 13) and over
//! each partition's records by their length. So the proxy tells a request naming no
//! guarded topic from one it must decode for the cost of a walk over its headers, not
//! of a search through its record bytes. Anything the walk does not accept is decoded.

use super::wire_scan::{Reader, ScanError, ScannedTopic};

/// Oldest and newest versions walked.
const VERSIONS: std::ops::RangeInclusive<i16> = 3..=13;
const FLEXIBLE_SINCE: i16 = 9;
const TOPIC_IDS_SINCE: i16 = 13;

/// Walks `body` (the request after its header) and calls `topic` with each topic's
/// name or id, in order.
pub fn scan_produce_topics<'a>(
    body: &'a [u8],
    version: i16,
    mut topic: impl FnMut(ScannedTopic<'a>),
) -> Result<(), ScanError> {
    if !VERSIONS.contains(&version) {
        return Err(ScanError::Version(version));
    }
    let flexible = version >= FLEXIBLE_SINCE;
    let mut r = Reader { buf: body };
    r.utf8(flexible)?; // transactional_id
    r.skip(2 + 4)?; // acks, timeout_ms

    // Neither array is nullable: a null one is refused, as the decoder refuses it.
    let topics = r.array_len(flexible)?.ok_or(ScanError::Malformed)?;
    for _ in 0..topics {
        let scanned = r.topic(version >= TOPIC_IDS_SINCE, flexible)?;
        let partitions = r.array_len(flexible)?.ok_or(ScanError::Malformed)?;
        for _ in 0..partitions {
            r.skip(4)?; // index
            r.bytes(flexible)?; // records
            if flexible {
                r.skip_tagged_fields()?;
            }
        }
        if flexible {
            r.skip_tagged_fields()?;
        }
        topic(scanned);
    }
    if flexible {
        r.skip_tagged_fields()?;
    }
    if !r.buf.is_empty() {
        // Bytes after the last field: not a request this walk understands.
        return Err(ScanError::Malformed);
    }
    Ok(())
}
