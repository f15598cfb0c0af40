//! ApiVersions: the proxy offers the intersection of the broker's ranges and the
//! versions reviewed here, drops API keys it does not know or will not carry, and
//! answers ApiVersions requests newer than it knows with UNSUPPORTED_VERSION v0.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::chain::{Chain, Look, Step};
use super::{forward, Interceptor, OnResponse, RequestAction, RequestMeta};
use crate::kafka::codec::{self, peek_response_error, CodecError};
use crate::kafka::error_code::UNSUPPORTED_VERSION;
use crate::kafka::frame::RequestFrame;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::forward::Boxed;

pub const INTERCEPTOR: Interceptor = Interceptor {
    name: "api_versions",
    api_keys: &[ApiKey::ApiVersions],
    on_request,
};

fn on_request(_: &Arc<Shared>, frame: RequestFrame) -> Boxed<'_, Result<RequestAction, ConnError>> {
    let on_response = OnResponse::Rewrite(Chain::boxed((Negotiate,)));
    Box::pin(std::future::ready(Ok(forward(frame, on_response))))
}

/// The broker's answer narrowed to what the proxy offers.
pub struct Negotiate;

impl Step<ApiVersionsResponse> for Negotiate {
    const NAME: &'static str = "api_versions";

    fn wants(&self, look: &Look<'_>) -> bool {
        // An error answer (UNSUPPORTED_VERSION) is v0-formatted whatever was asked: it
        // goes back untouched so the client retries with a version it lists.
        peek_response_error(look.frame, ApiKey::ApiVersions, look.meta.api_version) == Some(0)
    }

    fn apply(
        self,
        shared: &Arc<Shared>,
        _: &RequestMeta,
        response: &mut ApiVersionsResponse,
    ) -> Result<bool, ConnError> {
        negotiate(response);
        if shared.registry.load().forwards_any() {
            cap_transaction_version(response);
        }
        Ok(true)
    }
}

/// Versions of every API the proxy offers, reviewed against the `kafka-protocol` crate
/// (messages of Kafka 4.1). A unit test compares this table with the crate, so an upgrade
/// that adds versions fails until someone reviews what the new versions change for the
/// interceptors (a new field carrying a broker address, topic ids instead of names, ...).
const REVIEWED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::OffsetCommit, 2, 10),
    (ApiKey::OffsetFetch, 1, 10),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 6),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::CreateDelegationToken, 1, 3),
    (ApiKey::RenewDelegationToken, 1, 2),
    (ApiKey::ExpireDelegationToken, 1, 2),
    (ApiKey::DescribeDelegationToken, 1, 3),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::Vote, 0, 2),
    (ApiKey::BeginQuorumEpoch, 0, 1),
    (ApiKey::EndQuorumEpoch, 0, 1),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::AlterPartition, 2, 3),
    (ApiKey::UpdateFeatures, 0, 2),
    (ApiKey::Envelope, 0, 0),
    (ApiKey::FetchSnapshot, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::BrokerRegistration, 0, 4),
    (ApiKey::BrokerHeartbeat, 0, 1),
    (ApiKey::UnregisterBroker, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::AllocateProducerIds, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::ControllerRegistration, 0, 0),
    (ApiKey::GetTelemetrySubscriptions, 0, 0),
    (ApiKey::PushTelemetry, 0, 0),
    (ApiKey::AssignReplicasToDirs, 0, 0),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::AddRaftVoter, 0, 0),
    (ApiKey::RemoveRaftVoter, 0, 0),
    (ApiKey::UpdateRaftVoter, 0, 0),
    (ApiKey::InitializeShareGroupState, 0, 0),
    (ApiKey::ReadShareGroupState, 0, 0),
    (ApiKey::WriteShareGroupState, 0, 0),
    (ApiKey::DeleteShareGroupState, 0, 0),
    (ApiKey::ReadShareGroupStateSummary, 0, 0),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
];

/// Not offered to clients: share-group responses carry broker addresses (ShareFetch and
/// ShareAcknowledge `NodeEndpoints`) and the share-group state APIs are inter-broker; the
/// feature is a preview in Kafka 4.1, so it stays off until the proxy rewrites them.
const NOT_OFFERED: &[ApiKey] = &[
    ApiKey::ShareGroupHeartbeat,
    ApiKey::ShareGroupDescribe,
    ApiKey::ShareFetch,
    ApiKey::ShareAcknowledge,
    ApiKey::InitializeShareGroupState,
    ApiKey::ReadShareGroupState,
    ApiKey::WriteShareGroupState,
    ApiKey::DeleteShareGroupState,
    ApiKey::ReadShareGroupStateSummary,
    ApiKey::DescribeShareGroupOffsets,
    ApiKey::AlterShareGroupOffsets,
    ApiKey::DeleteShareGroupOffsets,
];

/// Inter-broker and controller-only APIs: a broker or controller sends them, never a
/// client, and some write where a client must not (WriteTxnMarkers appends control
/// batches to any partition, a mirror's included, on a cluster without an authorizer).
/// Admin APIs that brokers forward to the controller (DescribeQuorum, Add/RemoveRaftVoter,
/// UnregisterBroker) stay offered.
const INTER_BROKER: &[ApiKey] = &[
    ApiKey::WriteTxnMarkers,
    ApiKey::Vote,
    ApiKey::BeginQuorumEpoch,
    ApiKey::EndQuorumEpoch,
    ApiKey::AlterPartition,
    ApiKey::Envelope,
    ApiKey::FetchSnapshot,
    ApiKey::BrokerRegistration,
    ApiKey::BrokerHeartbeat,
    ApiKey::AllocateProducerIds,
    ApiKey::ControllerRegistration,
    ApiKey::AssignReplicasToDirs,
    ApiKey::UpdateRaftVoter,
];

/// The versions the proxy itself can carry for `key`, or `None` when it is not offered.
pub fn proxy_range(key: ApiKey) -> Option<(i16, i16)> {
    if NOT_OFFERED.contains(&key) || INTER_BROKER.contains(&key) {
        return None;
    }
    let (_, min, max) = REVIEWED.iter().find(|(k, _, _)| *k == key)?;
    let max = match key {
        // AddPartitionsToTxn v4+ is inter-broker (batched transactions); clients use v0-3.
        ApiKey::AddPartitionsToTxn => 3,
        _ => *max,
    };
    Some((*min, max))
}

/// True when the proxy carries this version of `key` for clients.
pub fn is_offered(key: ApiKey, version: i16) -> bool {
    match (key, proxy_range(key)) {
        // Produce's minimum stays at the broker's (0): librdkafka disables compression
        // when Produce v0 is missing (KAFKA-18659). v0-2 are forwarded undecoded.
        (ApiKey::Produce, Some((_, max))) => (0..=max).contains(&version),
        // SaslHandshake v0 stays listed (librdkafka detects SASL support by it) but is
        // refused: it switches the connection to unframed tokens the proxy cannot
        // follow. Clients that negotiate use v1 (tokens in SaslAuthenticate frames).
        (ApiKey::SaslHandshake, Some((_, max))) => (1..=max).contains(&version),
        (_, Some((min, max))) => (min..=max).contains(&version),
        (_, None) => false,
    }
}

/// Rewrites the broker's ApiVersions response into what the proxy offers.
pub fn negotiate(response: &mut ApiVersionsResponse) {
    response.api_keys.retain_mut(|entry| {
        let Ok(key) = ApiKey::try_from(entry.api_key) else {
            return false;
        };
        let Some((min, max)) = proxy_range(key) else {
            return false;
        };
        if key != ApiKey::Produce {
            entry.min_version = entry.min_version.max(min);
        }
        entry.max_version = entry.max_version.min(max);
        entry.min_version <= entry.max_version
    });
}

/// Finalized feature whose level 2 lets producers add partitions to a transaction by
/// writing to them (KIP-890), without an AddPartitionsToTxn the proxy could forward.
const TRANSACTION_VERSION: &str = "transaction.version";

/// While writes to mirrors are forwarded to a source, producers are told transactions
/// run at level 1 at most: every partition is then added by an AddPartitionsToTxn,
/// which the proxy sends to the source when it names forwarded mirrors. Brokers at
/// level 2 still take level-1 clients.
pub fn cap_transaction_version(response: &mut ApiVersionsResponse) {
    for feature in &mut response.finalized_features {
        if feature.name.as_str() == TRANSACTION_VERSION {
            feature.max_version_level = feature.max_version_level.min(1);
            feature.min_version_level = feature.min_version_level.min(feature.max_version_level);
        }
    }
}

/// Answer to an ApiVersions request newer than the proxy knows: always v0, so the
/// client can read it and retry with a version listed in it.
pub fn unsupported_version(correlation_id: i32) -> Result<bytes::Bytes, CodecError> {
    let (min, max) = proxy_range(ApiKey::ApiVersions).unwrap_or((0, 0));
    let response = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(min)
            .with_max_version(max)]);
    codec::encode_response(correlation_id, ApiKey::ApiVersions, 0, &response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_version_is_capped_at_one_and_other_features_kept() {
        use kafka_protocol::messages::api_versions_response::FinalizedFeatureKey;
        use kafka_protocol::protocol::StrBytes;
        let feature = |name: &'static str, min: i16, max: i16| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_min_version_level(min)
                .with_max_version_level(max)
        };
        let mut response = ApiVersionsResponse::default().with_finalized_features(vec![
            feature("transaction.version", 2, 2),
            feature("metadata.version", 7, 27),
        ]);
        cap_transaction_version(&mut response);
        let levels: Vec<(i16, i16)> = response
            .finalized_features
            .iter()
            .map(|f| (f.min_version_level, f.max_version_level))
            .collect();
        assert_eq!(levels, vec![(1, 1), (7, 27)]);
    }

    #[test]
    fn every_kafka_protocol_version_was_reviewed() {
        for key in ApiKey::iter() {
            let crate_range = key.valid_versions();
            let reviewed = REVIEWED.iter().find(|(k, _, _)| *k == key);
            assert_eq!(
                reviewed.map(|(_, min, max)| (*min, *max)),
                Some((crate_range.min, crate_range.max)),
                "{key:?}: kafka-protocol supports {crate_range}; review the interceptors for \
                 the new versions, then update REVIEWED"
            );
        }
        assert_eq!(REVIEWED.len(), ApiKey::iter().count());
    }

    fn entry(key: ApiKey, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(key as i16)
            .with_min_version(min)
            .with_max_version(max)
    }

    #[test]
    fn negotiation_intersects_keeps_produce_min_and_drops_unknown() {
        let mut response = ApiVersionsResponse::default().with_api_keys(vec![
            entry(ApiKey::Produce, 0, 99),
            entry(ApiKey::Fetch, 4, 99),
            entry(ApiKey::SaslHandshake, 0, 1),
            entry(ApiKey::ShareFetch, 1, 1),
            ApiVersion::default().with_api_key(999).with_max_version(3),
        ]);
        negotiate(&mut response);
        let got: Vec<_> = response
            .api_keys
            .iter()
            .map(|e| (e.api_key, e.min_version, e.max_version))
            .collect();
        assert_eq!(
            got,
            vec![
                (ApiKey::Produce as i16, 0, 13),
                (ApiKey::Fetch as i16, 4, 18),
                (ApiKey::SaslHandshake as i16, 0, 1),
            ]
        );
    }

    #[test]
    fn inter_broker_apis_are_neither_listed_nor_carried() {
        let mut response = ApiVersionsResponse::default().with_api_keys(vec![
            entry(ApiKey::WriteTxnMarkers, 0, 1),
            entry(ApiKey::BrokerHeartbeat, 0, 1),
            entry(ApiKey::DescribeQuorum, 0, 2),
        ]);
        negotiate(&mut response);
        let keys: Vec<_> = response.api_keys.iter().map(|e| e.api_key).collect();
        assert_eq!(keys, vec![ApiKey::DescribeQuorum as i16]);
        for key in INTER_BROKER {
            assert!(!is_offered(*key, key.valid_versions().max), "{key:?}");
        }
    }

    #[test]
    fn sasl_handshake_v0_is_listed_but_not_carried() {
        assert!(!is_offered(ApiKey::SaslHandshake, 0));
        assert!(is_offered(ApiKey::SaslHandshake, 1));
        assert!(is_offered(ApiKey::Produce, 0));
    }

    #[test]
    fn newer_api_versions_request_gets_v0_unsupported_version() {
        let frame = unsupported_version(42).unwrap();
        // length, correlation id, then the v0 body: error code first.
        assert_eq!(&frame[4..8], &42i32.to_be_bytes());
        assert_eq!(&frame[8..10], &UNSUPPORTED_VERSION.to_be_bytes());
    }
}
