//! Kafka's error codes by name, taken from the protocol crate's table so that no code
//! is written by hand. Only the codes this project reads or answers with are named.

use kafka_protocol::ResponseError as E;

pub const CONCURRENT_TRANSACTIONS: i16 = E::ConcurrentTransactions.code();
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = E::CoordinatorLoadInProgress.code();
pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();
pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = E::DuplicateSequenceNumber.code();
pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();
pub const FENCED_LEADER_EPOCH: i16 = E::FencedLeaderEpoch.code();
pub const FENCED_MEMBER_EPOCH: i16 = E::FencedMemberEpoch.code();
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = E::FetchSessionIdNotFound.code();
pub const GROUP_AUTHORIZATION_FAILED: i16 = E::GroupAuthorizationFailed.code();
pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();
pub const INVALID_CONFIG: i16 = E::InvalidConfig.code();
pub const INVALID_FETCH_SESSION_EPOCH: i16 = E::InvalidFetchSessionEpoch.code();
pub const INVALID_PARTITIONS: i16 = E::InvalidPartitions.code();
pub const INVALID_PRODUCER_EPOCH: i16 = E::InvalidProducerEpoch.code();
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();
pub const INVALID_TXN_STATE: i16 = E::InvalidTxnState.code();
pub const LEADER_NOT_AVAILABLE: i16 = E::LeaderNotAvailable.code();
pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();
pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();
pub const NOT_ENOUGH_REPLICAS: i16 = E::NotEnoughReplicas.code();
pub const NOT_LEADER_OR_FOLLOWER: i16 = E::NotLeaderOrFollower.code();
pub const OFFSET_OUT_OF_RANGE: i16 = E::OffsetOutOfRange.code();
pub const OPERATION_NOT_ATTEMPTED: i16 = E::OperationNotAttempted.code();
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = E::OutOfOrderSequenceNumber.code();
pub const PRODUCER_FENCED: i16 = E::ProducerFenced.code();
pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();
pub const REQUEST_TIMED_OUT: i16 = E::RequestTimedOut.code();
pub const STALE_MEMBER_EPOCH: i16 = E::StaleMemberEpoch.code();
pub const TOPIC_ALREADY_EXISTS: i16 = E::TopicAlreadyExists.code();
pub const TOPIC_AUTHORIZATION_FAILED: i16 = E::TopicAuthorizationFailed.code();
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = E::TransactionalIdNotFound.code();
pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();
pub const UNKNOWN_PRODUCER_ID: i16 = E::UnknownProducerId.code();
pub const UNKNOWN_TOPIC_ID: i16 = E::UnknownTopicId.code();
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();
pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes we answer clients with, as the protocol's table numbers them (the
    /// numbers a client decides on: retry, abort or give up).
    #[test]
    fn the_codes_we_answer_with_are_the_protocols() {
        assert_eq!(INVALID_REQUEST, 42);
        assert_eq!(REQUEST_TIMED_OUT, 7);
        assert_eq!(TOPIC_AUTHORIZATION_FAILED, 29);
        assert_eq!(INVALID_CONFIG, 40);
        assert_eq!(UNKNOWN_TOPIC_ID, 100);
        assert_eq!(NOT_LEADER_OR_FOLLOWER, 6);
        assert_eq!(COORDINATOR_NOT_AVAILABLE, 15);
        assert_eq!(CONCURRENT_TRANSACTIONS, 51);
        assert_eq!(INVALID_TXN_STATE, 48);
        assert_eq!(UNKNOWN_PRODUCER_ID, 59);
        assert_eq!(OPERATION_NOT_ATTEMPTED, 55);
        assert_eq!(GROUP_AUTHORIZATION_FAILED, 30);
        assert_eq!(UNSUPPORTED_VERSION, 35);
        assert_eq!(NOT_ENOUGH_REPLICAS, 19);
    }
}
