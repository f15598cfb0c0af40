//! The replicating instances share the copying through one consumer group
//! (`[replicator] group_id`). A client that joined it would be handed mirror partitions
//! it never copies, and one that sent LeaveGroup or Heartbeat with a member id read from
//! DescribeGroups could make the fleet rebalance at will: the group's membership APIs
//! are refused with GROUP_AUTHORIZATION_FAILED. Describing the group still works.
//! Frames are decoded only when a cheap scan finds the group id in them.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::Encodable;

use super::{forward, Interceptor, OnResponse, RequestAction};
use crate::kafka::codec::{decode_request, encode_response};
use crate::kafka::error_code::GROUP_AUTHORIZATION_FAILED;
use crate::kafka::frame::RequestFrame;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;

pub const INTERCEPTOR: Interceptor = Interceptor {
    name: "fleet_group_guard",
    api_keys: &[
        ApiKey::JoinGroup,
        ApiKey::SyncGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::DeleteGroups,
    ],
    on_request: |shared, frame| Box::pin(std::future::ready(on_request(shared, frame))),
};

fn on_request(shared: &Arc<Shared>, frame: RequestFrame) -> Result<RequestAction, ConnError> {
    let group = shared.registry.load().config.replicator.group_id();
    if memchr::memmem::find(&frame.bytes, group.as_bytes()).is_none() {
        return Ok(forward(frame, OnResponse::Forward));
    }
    let decode_err = ConnError::client_codec;
    let refusal = match frame.api_key {
        ApiKey::JoinGroup => {
            let request: JoinGroupRequest = decode_request(&frame).map_err(decode_err)?;
            (request.group_id.as_str() == group).then(|| {
                respond(
                    &frame,
                    &JoinGroupResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED),
                )
            })
        }
        ApiKey::SyncGroup => {
            let request: SyncGroupRequest = decode_request(&frame).map_err(decode_err)?;
            (request.group_id.as_str() == group).then(|| {
                respond(
                    &frame,
                    &SyncGroupResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED),
                )
            })
        }
        ApiKey::Heartbeat => {
            let request: HeartbeatRequest = decode_request(&frame).map_err(decode_err)?;
            (request.group_id.as_str() == group).then(|| {
                respond(
                    &frame,
                    &HeartbeatResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED),
                )
            })
        }
        ApiKey::LeaveGroup => {
            let request: LeaveGroupRequest = decode_request(&frame).map_err(decode_err)?;
            (request.group_id.as_str() == group).then(|| {
                respond(
                    &frame,
                    &LeaveGroupResponse::default().with_error_code(GROUP_AUTHORIZATION_FAILED),
                )
            })
        }
        ApiKey::DeleteGroups => {
            let request: DeleteGroupsRequest = decode_request(&frame).map_err(decode_err)?;
            // Refused whole, as a broker refuses what it may not do: every group named
            // gets the error (the request names ours, which it may not touch).
            request
                .groups_names
                .iter()
                .any(|g| g.as_str() == group)
                .then(|| {
                    let results = request
                        .groups_names
                        .into_iter()
                        .map(|g| {
                            DeletableGroupResult::default()
                                .with_group_id(g)
                                .with_error_code(GROUP_AUTHORIZATION_FAILED)
                        })
                        .collect();
                    respond(
                        &frame,
                        &DeleteGroupsResponse::default().with_results(results),
                    )
                })
        }
        _ => None,
    };
    match refusal {
        Some(answer) => {
            tracing::warn!(side = "client", api = ?frame.api_key, group, "refused a request on the fleet's group");
            Ok(RequestAction::Respond(answer?))
        }
        None => Ok(forward(frame, OnResponse::Forward)),
    }
}

fn respond<T: Encodable>(frame: &RequestFrame, body: &T) -> Result<bytes::Bytes, ConnError> {
    encode_response(frame.correlation_id, frame.api_key, frame.api_version, body)
        .map_err(ConnError::internal)
}
