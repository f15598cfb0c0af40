//! The member task: FindCoordinator → JoinGroup → (leader: assign) → SyncGroup →
//! Heartbeat, and back to JoinGroup or FindCoordinator as the coordinator says.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio_util::sync::CancellationToken;

use super::protocol::{self, MemberClaim};
use super::{
    Assignment, Connector, MembershipConfig, MembershipError, Phase, Shared, ASSIGNOR, MAX_MEMBERS,
    MAX_MEMBER_ID_BYTES, PROTOCOL_TYPE,
};
use crate::kafka::admin::AdminError;
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::error_code::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION, MEMBER_ID_REQUIRED, NOT_COORDINATOR, REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
};
use crate::kafka::groups::{self};

/// v7 (Kafka 2.5) has everything used here: member ids handed out by the
/// coordinator (v4), static membership (v5), the protocol name in the answer (v7).
const JOIN_GROUP_VERSION: i16 = 7;
/// v5 (Kafka 2.5): protocol type and name, checked by the coordinator.
const SYNC_GROUP_VERSION: i16 = 5;
/// v4 (Kafka 2.4), flexible, with the instance id.
const HEARTBEAT_VERSION: i16 = 4;
/// v4 (Kafka 2.4): members by identity, so a static member can leave too.
const LEAVE_GROUP_VERSION: i16 = 4;
/// At most this long for LeaveGroup at shutdown: others take over anyway after the
/// session timeout.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a round failed, and what to do about it.
struct Fault {
    error: MembershipError,
    /// The coordinator is gone or moved: find it again.
    rediscover: bool,
    /// Our generation's shards may already be someone else's: give them up now.
    fence: bool,
    /// The coordinator does not know our member id (any more).
    forget_member: bool,
    /// Join again rather than heartbeat.
    rejoin: bool,
}

impl Fault {
    fn coordinator(error: MembershipError) -> Self {
        Self {
            error,
            rediscover: true,
            fence: false,
            forget_member: false,
            rejoin: false,
        }
    }

    fn rejoin(error: MembershipError, fence: bool) -> Self {
        Self {
            error,
            rediscover: false,
            fence,
            forget_member: false,
            rejoin: true,
        }
    }

    /// The answer to a Kafka error code in JoinGroup, SyncGroup or Heartbeat.
    fn from_code(api: &'static str, code: i16) -> Self {
        let error = MembershipError::Kafka { api, code };
        match code {
            NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS => {
                Self::coordinator(error)
            }
            UNKNOWN_MEMBER_ID | FENCED_INSTANCE_ID => Self {
                forget_member: true,
                ..Self::rejoin(error, true)
            },
            // The member id stays valid; only the generation is stale.
            ILLEGAL_GENERATION => Self::rejoin(error, true),
            REBALANCE_IN_PROGRESS => Self::rejoin(error, false),
            // Authorization, protocol mismatch, group full...: our standing is unknown.
            _ => Self::rejoin(error, true),
        }
    }
}

impl From<MembershipError> for Fault {
    fn from(error: MembershipError) -> Self {
        match error {
            // A connection that failed or timed out is dropped; its coordinator may
            // be gone too.
            MembershipError::Client(_) | MembershipError::Timeout(_) => Self::coordinator(error),
            _ => Self::rejoin(error, true),
        }
    }
}

pub(super) struct Member<C> {
    shared: Arc<Shared>,
    config: MembershipConfig,
    connector: C,
    cancel: CancellationToken,
    span: tracing::Span,
    conn: Option<KafkaConnection>,
    coordinator: Option<String>,
    member_id: String,
    generation: i32,
    /// Shards of our last generation, claimed again in the next JoinGroup.
    owned: BTreeSet<i32>,
    owned_generation: i32,
    needs_join: bool,
    next_heartbeat: Instant,
    backoff: Backoff,
    /// Where the next coordinator lookup starts among the bootstrap servers.
    next_bootstrap: usize,
}

impl<C: Connector> Member<C> {
    pub(super) fn new(
        shared: Arc<Shared>,
        connector: C,
        cancel: CancellationToken,
        span: tracing::Span,
    ) -> Self {
        let config = shared.config.clone();
        let backoff = Backoff::new(
            config.retry_backoff,
            config.retry_backoff_max,
            Jitter::Equal,
        );
        Self {
            shared,
            config,
            connector,
            cancel,
            span,
            conn: None,
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            owned: BTreeSet::new(),
            owned_generation: -1,
            needs_join: true,
            next_heartbeat: Instant::now(),
            backoff,
            next_bootstrap: 0,
        }
    }

    pub(super) async fn run(mut self) {
        let cancel = self.cancel.clone();
        loop {
            let outcome = tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                outcome = self.round() => Some(outcome),
            };
            let Some(outcome) = outcome else { break };
            if let Err(fault) = outcome {
                self.recover(fault);
                let delay = self.backoff.next_delay();
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        self.leave().await;
    }

    fn recover(&mut self, fault: Fault) {
        let reason = fault.error.to_string();
        if fault.rediscover {
            tracing::info!(coordinator = ?self.coordinator, "coordinator lost: {reason}");
            self.conn = None;
            self.coordinator = None;
            self.shared.set_coordinator(None);
            self.shared.set_phase(Phase::Discovering);
        } else {
            tracing::warn!("rejoining: {reason}");
        }
        if fault.fence {
            self.shared.fence(&reason);
        }
        if fault.forget_member {
            self.member_id.clear();
            self.generation = -1;
        }
        if fault.rejoin {
            self.needs_join = true;
        }
    }

    async fn round(&mut self) -> Result<(), Fault> {
        if self.conn.is_none() {
            self.connect_coordinator().await?;
        }
        if self.needs_join {
            self.join_and_sync().await?;
        } else {
            tokio::time::sleep_until(self.next_heartbeat.into()).await;
            self.heartbeat().await?;
        }
        self.backoff.reset();
        Ok(())
    }

    /// One call on the coordinator connection. The connection is held by the call
    /// while it runs, so a call abandoned midway (cancel) takes it along instead of
    /// leaving a half-read response for the next one.
    async fn call<R: Request>(
        &mut self,
        api: &'static str,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, Fault> {
        let mut conn = self
            .conn
            .take()
            .ok_or_else(|| Fault::coordinator(ClientError::Closed.into()))?;
        conn.set_request_timeout(timeout);
        let response = conn.call(request, version).await.map_err(|e| {
            Fault::coordinator(match e {
                ClientError::Timeout(_) => MembershipError::Timeout(api),
                e => MembershipError::Client(e),
            })
        })?;
        self.conn = Some(conn);
        Ok(response)
    }

    /// Not an `async fn`: the future must not borrow `self`, which is not `Sync`.
    fn connect(
        &self,
        addr: &str,
    ) -> impl std::future::Future<Output = Result<KafkaConnection, MembershipError>> + Send {
        let connecting = self.connector.connect(addr);
        let timeout = self.config.request_timeout();
        async move {
            tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| MembershipError::Timeout("connect"))?
                .map_err(MembershipError::Client)
        }
    }

    /// FindCoordinator through a bootstrap server, then a connection to the answer.
    async fn connect_coordinator(&mut self) -> Result<(), Fault> {
        self.shared.set_phase(Phase::Discovering);
        let servers = &self.config.bootstrap_servers;
        let server = servers[self.next_bootstrap % servers.len()].clone();
        // The next lookup tries another server, in case this one is the problem.
        self.next_bootstrap = self.next_bootstrap.wrapping_add(1);
        let mut bootstrap = self.connect(&server).await?;
        bootstrap.set_request_timeout(self.config.request_timeout());
        let group = self.config.group_id.clone();
        let mut found = groups::find_coordinators(&mut bootstrap, std::slice::from_ref(&group))
            .await
            .map_err(MembershipError::Client)?;
        let addr = match found.remove(&group) {
            Some(Ok(addr)) => addr,
            Some(Err(AdminError::Kafka { code, .. })) => {
                return Err(Fault::coordinator(MembershipError::Kafka {
                    api: "FindCoordinator",
                    code,
                }))
            }
            Some(Err(e)) => return Err(Fault::coordinator(e.into())),
            None => {
                return Err(Fault::coordinator(MembershipError::Kafka {
                    api: "FindCoordinator",
                    code: COORDINATOR_NOT_AVAILABLE,
                }))
            }
        };
        if !valid_address(&addr) {
            return Err(Fault::coordinator(MembershipError::Malformed {
                what: "FindCoordinator answer",
                reason: format!("address '{}'", addr.escape_debug()),
            }));
        }
        // The bootstrap server may be the coordinator; a second connection is
        // simpler than telling, and this happens once per coordinator change.
        drop(bootstrap);
        let conn = self.connect(&addr).await?;
        tracing::debug!(coordinator = %addr, "coordinator found");
        self.shared.set_coordinator(Some(addr.clone()));
        self.coordinator = Some(addr);
        self.conn = Some(conn);
        Ok(())
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.config.group_id.clone()))
    }

    fn instance_id(&self) -> Option<StrBytes> {
        self.config
            .instance_id
            .as_ref()
            .map(|i| StrBytes::from_string(i.clone()))
    }

    fn set_member_id(&mut self, id: &StrBytes) -> Result<(), Fault> {
        let id = id.as_str();
        if id.is_empty() || id.len() > MAX_MEMBER_ID_BYTES {
            return Err(MembershipError::Malformed {
                what: "JoinGroup answer",
                reason: format!("member id of {} bytes", id.len()),
            }
            .into());
        }
        if id != self.member_id {
            self.member_id = id.to_string();
            self.span.record("member", id);
        }
        Ok(())
    }

    async fn join(&mut self) -> Result<(JoinGroupResponse, Instant), Fault> {
        self.shared.set_phase(Phase::Joining);
        let metadata = protocol::encode_subscription(
            &self.config.shards_topic,
            self.config.shards,
            &self.owned,
            self.owned_generation,
        )?;
        let timeout = self.config.rebalance_timeout + self.config.request_timeout();
        // A new dynamic member is first told its id (MEMBER_ID_REQUIRED) and must
        // join again with it; once is enough, a loop would be a broker bug.
        for _ in 0..3 {
            let request = JoinGroupRequest::default()
                .with_group_id(self.group_id())
                .with_session_timeout_ms(millis(self.config.session_timeout))
                .with_rebalance_timeout_ms(millis(self.config.rebalance_timeout))
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_group_instance_id(self.instance_id())
                .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(ASSIGNOR))
                    .with_metadata(metadata.clone())]);
            let response = self
                .call("JoinGroup", &request, JOIN_GROUP_VERSION, timeout)
                .await?;
            let joined = Instant::now();
            match response.error_code {
                0 => return Ok((response, joined)),
                MEMBER_ID_REQUIRED => self.set_member_id(&response.member_id)?,
                code => return Err(Fault::from_code("JoinGroup", code)),
            }
        }
        Err(MembershipError::Malformed {
            what: "JoinGroup answer",
            reason: "member id required again and again".into(),
        }
        .into())
    }

    async fn join_and_sync(&mut self) -> Result<(), Fault> {
        let (joined, joined_at) = self.join().await?;
        self.set_member_id(&joined.member_id)?;
        if joined.generation_id < 0 {
            return Err(malformed_join(format!(
                "generation {}",
                joined.generation_id
            )));
        }
        if let Some(name) = &joined.protocol_name {
            if name.as_str() != ASSIGNOR {
                return Err(malformed_join(format!(
                    "protocol '{}'",
                    name.escape_debug()
                )));
            }
        }
        self.generation = joined.generation_id;
        let leader = joined.leader.as_str() == self.member_id;
        let assignments = if leader && !joined.skip_assignment {
            self.assign(&joined)?
        } else {
            Vec::new()
        };
        let members = assignments.len();
        let request = SyncGroupRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id())
            .with_protocol_type(Some(StrBytes::from_static_str(PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_static_str(ASSIGNOR)))
            .with_assignments(assignments);
        // Followers wait for the leader's SyncGroup, which may take a rebalance timeout.
        let timeout = self.config.rebalance_timeout + self.config.request_timeout();
        let synced = self
            .call("SyncGroup", &request, SYNC_GROUP_VERSION, timeout)
            .await
            .map_err(|mut fault| {
                // The generation's assignment is out, maybe giving our shards away.
                fault.fence = true;
                fault.rejoin = true;
                fault
            })?;
        if synced.error_code != 0 {
            let mut fault = Fault::from_code("SyncGroup", synced.error_code);
            fault.fence = true;
            fault.rejoin = true;
            return Err(fault);
        }
        let decoded = protocol::decode_assignment(
            &synced.assignment,
            &self.config.shards_topic,
            self.config.shards,
        )?;
        if let Some(theirs) = decoded.leader_shards.filter(|s| *s != self.config.shards) {
            return Err(MembershipError::Config(format!(
                "the group's leader cuts the work into {theirs} shards, this instance into {}",
                self.config.shards
            ))
            .into());
        }
        let assignment = Assignment {
            generation: self.generation,
            member_id: self.member_id.clone(),
            shards: decoded.shards,
            members: decoded.members.unwrap_or(members).min(MAX_MEMBERS),
            leader,
        };
        tracing::info!(
            generation = assignment.generation,
            leader,
            members = assignment.members,
            shards = assignment.shards.len(),
            "joined the fleet"
        );
        self.owned = assignment.shards.clone();
        self.owned_generation = self.generation;
        self.needs_join = false;
        self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        self.shared.publish(assignment, joined_at);
        Ok(())
    }

    /// The leader's part: everyone's shards for this generation.
    fn assign(&self, joined: &JoinGroupResponse) -> Result<Vec<SyncGroupRequestAssignment>, Fault> {
        if joined.members.len() > MAX_MEMBERS {
            return Err(malformed_join(format!("{} members", joined.members.len())));
        }
        let topic = &self.config.shards_topic;
        let shards = self.config.shards;
        let mut claims = Vec::new();
        let mut ids = BTreeSet::new();
        for m in &joined.members {
            let id = m.member_id.as_str();
            if id.is_empty() || id.len() > MAX_MEMBER_ID_BYTES || !ids.insert(id.to_string()) {
                return Err(malformed_join(format!("member id '{}'", id.escape_debug())));
            }
            match protocol::decode_subscription(&m.metadata, topic, shards) {
                Ok(s)
                    if s.topics.iter().any(|t| t == topic)
                        && s.shards.unwrap_or(shards) == shards =>
                {
                    claims.push(MemberClaim {
                        member_id: id.to_string(),
                        owned: s.owned,
                        generation: s.generation,
                    });
                }
                // Such a member gets nothing: it would copy other keys than we think.
                Ok(s) => tracing::warn!(
                    member = id,
                    topics = ?s.topics,
                    shards = ?s.shards,
                    "member subscribes to other shards; it gets none"
                ),
                Err(e) => tracing::warn!(member = id, "member metadata ignored: {e}"),
            }
        }
        let plan: BTreeMap<String, BTreeSet<i32>> = protocol::assign_sticky(shards, &claims);
        let members = i32::try_from(claims.len()).unwrap_or(i32::MAX);
        ids.iter()
            .map(|id| {
                let empty = BTreeSet::new();
                let mine = plan.get(id).unwrap_or(&empty);
                let bytes = protocol::encode_assignment(topic, mine, shards, members)?;
                Ok(SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(id.clone()))
                    .with_assignment(bytes))
            })
            .collect::<Result<_, MembershipError>>()
            .map_err(Fault::from)
    }

    async fn heartbeat(&mut self) -> Result<(), Fault> {
        let request = HeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_group_instance_id(self.instance_id());
        let sent = Instant::now();
        let timeout = self.config.request_timeout();
        let response = self
            .call("Heartbeat", &request, HEARTBEAT_VERSION, timeout)
            .await?;
        self.next_heartbeat = sent + self.config.heartbeat_interval;
        match response.error_code {
            0 => {
                self.shared.heartbeat_ok(sent, true);
                if self.shared.is_fenced() {
                    // The watchdog gave the shards up while heartbeats went unanswered
                    // (a coordinator moving, say), but the group still counts us in
                    // with them: nobody else will copy them until we rejoin.
                    tracing::info!("heartbeats answered again after fencing; rejoining");
                    self.needs_join = true;
                }
                Ok(())
            }
            REBALANCE_IN_PROGRESS => {
                // The coordinator counted this heartbeat; the shards stay ours until
                // the next generation's assignment (which nobody gets before we join).
                self.shared.heartbeat_ok(sent, false);
                tracing::debug!("rebalance in progress");
                self.needs_join = true;
                Ok(())
            }
            code => Err(Fault::from_code("Heartbeat", code)),
        }
    }

    /// Gives the shards up, then leaves the group so that the others take them over
    /// now instead of after our session timeout.
    async fn leave(&mut self) {
        self.shared.fence("leaving the group");
        self.shared.set_phase(Phase::Left);
        if self.member_id.is_empty() {
            return;
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(self.group_id())
            .with_members(vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_group_instance_id(self.instance_id())]);
        let attempt = async {
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                // The last call was abandoned with its connection; open another.
                None => {
                    let addr = self
                        .coordinator
                        .clone()
                        .ok_or(MembershipError::Client(ClientError::Closed))?;
                    self.connect(&addr).await?
                }
            };
            conn.set_request_timeout(LEAVE_TIMEOUT);
            let response = conn.call(&request, LEAVE_GROUP_VERSION).await?;
            let code = response
                .members
                .iter()
                .map(|m| m.error_code)
                .find(|c| *c != 0)
                .unwrap_or(response.error_code);
            if code != 0 {
                return Err(MembershipError::Kafka {
                    api: "LeaveGroup",
                    code,
                });
            }
            Ok::<_, MembershipError>(())
        };
        match tokio::time::timeout(LEAVE_TIMEOUT, attempt).await {
            Ok(Ok(())) => tracing::info!("left the fleet"),
            Ok(Err(e)) => tracing::warn!("LeaveGroup failed: {e}"),
            Err(_) => tracing::warn!("LeaveGroup timed out"),
        }
    }
}

fn malformed_join(reason: String) -> Fault {
    MembershipError::Malformed {
        what: "JoinGroup answer",
        reason,
    }
    .into()
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// host:port with a plausible host and a port in 1..=65535.
fn valid_address(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host.len() <= 255
        && !host.chars().any(|c| c.is_control() || c.is_whitespace())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}
