//! Why a mirror is FAILED: a typed reason, whose code starts the text users see in
//! `mirrors --describe` and is the bounded `reason` label of
//! `mirrorgate_mirror_failures_total`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    SourceTopicMayBeDeleted,
    SourceTopicIdChanged,
    SourcePartitionsDecreased,
    /// The destination holds other data than the source at the same offsets.
    OffsetMismatch,
    /// A source batch fails its own check (its CRC).
    CorruptSource,
    /// A source batch we cannot copy as it is (its format or layout).
    UnsupportedShape,
    /// A partition copier used again after it failed: a bug of ours, never data.
    IllegalState,
    /// Transient errors lasted past `cluster.link.retry.timeout.ms`.
    RetryTimeout,
}

impl FailureReason {
    pub const fn code(self) -> &'static str {
        match self {
            Self::SourceTopicMayBeDeleted => "SOURCE_TOPIC_MAY_BE_DELETED",
            Self::SourceTopicIdChanged => "SOURCE_TOPIC_ID_CHANGED",
            Self::SourcePartitionsDecreased => "SOURCE_PARTITIONS_DECREASED",
            Self::OffsetMismatch => "OFFSET_MISMATCH",
            Self::CorruptSource => "CORRUPT_SOURCE",
            Self::UnsupportedShape => "UNSUPPORTED_SHAPE",
            Self::IllegalState => "ILLEGAL_STATE",
            Self::RetryTimeout => "RETRY_TIMEOUT",
        }
    }
}

/// A reason and what happened; shown (and stored in the mirror's record) as
/// `CODE: detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorFailure {
    pub reason: FailureReason,
    pub detail: String,
}

impl MirrorFailure {
    pub fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for MirrorFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::record_batch::BatchError;
    use crate::replicator::partition::CopyError;

    #[test]
    fn fatal_copy_errors_fail_the_mirror_under_their_reason_and_transient_ones_do_not() {
        let crc = || BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        };
        let cases = [
            (
                CopyError::OffsetMismatch {
                    expected: 5,
                    got: 6,
                },
                Some("OFFSET_MISMATCH: source batch at offset 5 landed at 6 on the destination"),
            ),
            (
                CopyError::Diverged("the last batch differs".into()),
                Some("OFFSET_MISMATCH: the last batch differs"),
            ),
            (
                CopyError::Batch(BatchError::UnsupportedMagic(1)),
                Some("UNSUPPORTED_SHAPE: record batch magic 1 is not supported (only v2)"),
            ),
            (
                CopyError::CorruptSource {
                    partition: 3,
                    first: 10,
                    last: 12,
                    reason: crc(),
                },
                Some("CORRUPT_SOURCE: partition 3, the source batch at offsets 10..=12: record batch CRC mismatch: stored 0x00000001, computed 0x00000002"),
            ),
            (CopyError::Fetch(6), None),
            (
                CopyError::Produce {
                    code: 2,
                    message: String::new(),
                },
                None,
            ),
            (
                CopyError::Refused {
                    code: 45,
                    offset: 7,
                },
                None,
            ),
            (CopyError::ListOffsets(6), None),
        ];
        for (error, shown) in cases {
            assert_eq!(
                error.failure().map(|f| f.to_string()).as_deref(),
                shown,
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_failure_reads_code_then_detail() {
        let failure = MirrorFailure::new(FailureReason::CorruptSource, "partition 0");
        assert_eq!(failure.to_string(), "CORRUPT_SOURCE: partition 0");
    }
}
