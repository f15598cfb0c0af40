//! Fleet membership: mirrorgate instances share replication work through Kafka's
//! classic group protocol, with no coordinator of their own. Work is cut into a fixed
//! number of shards, the partitions of a small internal topic; each instance is a
//! member (protocol type `consumer`, so Kafka's tools describe it) that "subscribes"
//! to that topic, and the leader of each generation assigns the shards with a sticky
//! assignor of ours ([`protocol::assign_sticky`]).
//!
//! The member publishes its shards on a `watch` channel. It empties them itself
//! (self-fencing) when it cannot prove to be alive in time: before the coordinator
//! could expire it and hand its shards to another member. Appends stay safe even when
//! two instances briefly hold one shard (the destination's sequence checks refuse a
//! second writer); the fence only keeps such overlaps rare.

mod member;
pub mod protocol;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use protocol::{assign_sticky, shard_of, MemberClaim};

use super::admin::{self, AdminError};
use super::client::{ClientError, KafkaConnection};
use super::error_code::{TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION};
use super::groups::error_name;

/// What Kafka's tools expect to decode member metadata and assignments as.
pub const PROTOCOL_TYPE: &str = "consumer";
/// Our assignor's name; every member must offer it.
pub const ASSIGNOR: &str = "mirrorgate-sticky";
pub const DEFAULT_SHARDS_TOPIC: &str = "_mirrorgate-shards";
pub const DEFAULT_SHARDS: i32 = 64;
/// Shards are partitions of one topic: far more would only cost metadata.
pub const MAX_SHARDS: i32 = 10_000;
/// Members a leader accepts in one generation; a larger JoinGroup answer is refused.
pub const MAX_MEMBERS: usize = 1_000;
/// Longest member id accepted from the coordinator (Kafka's are ~60 bytes).
pub const MAX_MEMBER_ID_BYTES: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("membership config: {0}")]
    Config(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{api}: {}", error_name(*code))]
    Kafka { api: &'static str, code: i16 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("shards topic '{topic}' has {actual} partitions, expected {expected}")]
    ShardsTopicMismatch {
        topic: String,
        expected: i32,
        actual: i32,
    },
}

/// A connection to `addr` (a bootstrap server or the coordinator) with the TLS and
/// SASL settings of the cluster; any `Fn(String) -> impl Future` closure is one.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, addr: &str) -> ConnectFuture;
}

pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<KafkaConnection, ClientError>> + Send>>;

impl<F, Fut> Connector for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<KafkaConnection, ClientError>> + Send + 'static,
{
    fn connect(&self, addr: &str) -> ConnectFuture {
        Box::pin(self(addr.to_string()))
    }
}

#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub group_id: String,
    /// `group.instance.id`: static membership, so a restarted instance gets its
    /// member slot (and shards) back without a rebalance.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub bootstrap_servers: Vec<String>,
    pub shards_topic: String,
    /// Every instance of a fleet must use the same count ([`shard_of`] depends on it).
    pub shards: i32,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// First and longest delay between retries (coordinator lookups, rejoins).
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
}

impl MembershipConfig {
    /// Defaults: 64 shards of `_mirrorgate-shards`, session 30 s, rebalance 60 s,
    /// heartbeat every 10 s (a third of the session, as Kafka's consumers).
    pub fn new(group_id: &str, client_id: &str, bootstrap_servers: Vec<String>) -> Self {
        Self {
            group_id: group_id.to_string(),
            instance_id: None,
            client_id: client_id.to_string(),
            bootstrap_servers,
            shards_topic: DEFAULT_SHARDS_TOPIC.to_string(),
            shards: DEFAULT_SHARDS,
            session_timeout: Duration::from_secs(30),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(2),
        }
    }

    pub fn validate(&self) -> Result<(), MembershipError> {
        let bad = |m: String| Err(MembershipError::Config(m));
        if self.group_id.is_empty() || self.group_id.len() > 1024 {
            return bad("group_id: 1 to 1024 bytes".into());
        }
        if self.client_id.is_empty() {
            return bad("client_id: must not be empty".into());
        }
        if self.bootstrap_servers.is_empty() {
            return bad("bootstrap_servers: at least one".into());
        }
        if !valid_name(&self.shards_topic) {
            return bad(format!(
                "shards_topic: '{}' is no topic name",
                self.shards_topic
            ));
        }
        if let Some(id) = &self.instance_id {
            if !valid_name(id) {
                return bad(format!(
                    "instance_id: '{id}' must be 1-249 of [a-zA-Z0-9._-]"
                ));
            }
        }
        if !(1..=MAX_SHARDS).contains(&self.shards) {
            return bad(format!("shards: {} outside 1..={MAX_SHARDS}", self.shards));
        }
        let ms = |d: Duration| i32::try_from(d.as_millis()).is_ok_and(|m| m > 0);
        if !ms(self.session_timeout) || !ms(self.rebalance_timeout) {
            return bad("session_timeout, rebalance_timeout: 1 ms to 24 days".into());
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return bad("heartbeat_interval: above 0 and below session_timeout".into());
        }
        Ok(())
    }

    /// How long after the coordinator last heard from us (or, during a rebalance,
    /// after the group was last known stable) the member gives its shards up: two
    /// thirds of the timeout. The coordinator expires a member a whole session timeout
    /// (or, during a rebalance, a rebalance timeout) after that point, and only then
    /// starts the rebalance that moves its shards; the last third covers a heartbeat
    /// interval of retries left, our own scheduling delays, network latency and the
    /// time the owner of the assignment needs to stop copying.
    fn fence_after(timeout: Duration) -> Duration {
        timeout - timeout / 3
    }

    /// Timeout of the calls the broker answers at once (and of connecting).
    fn request_timeout(&self) -> Duration {
        (self.session_timeout / 3).clamp(Duration::from_secs(2), Duration::from_secs(30))
    }
}

/// A topic name or `group.instance.id`: Kafka allows the same characters in both.
fn valid_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The shards this instance holds, as last published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// -1 when the instance holds nothing: not yet joined, fenced, or left.
    pub generation: i32,
    pub member_id: String,
    pub shards: BTreeSet<i32>,
    /// Members of the generation (0 while holding nothing).
    pub members: usize,
    pub leader: bool,
}

impl Assignment {
    fn none(member_id: &str) -> Self {
        Self {
            generation: -1,
            member_id: member_id.to_string(),
            shards: BTreeSet::new(),
            members: 0,
            leader: false,
        }
    }
}

/// One instance as `/admin/fleet` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FleetMember {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    /// discovering, joining, stable, fenced or left.
    pub state: &'static str,
    pub coordinator: Option<String>,
    pub generation: i32,
    pub leader: bool,
    pub members: usize,
    pub shards: Vec<i32>,
    /// Since the coordinator last answered a heartbeat (or the SyncGroup of our
    /// generation).
    pub last_heartbeat_age_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Discovering,
    Joining,
    Stable,
    Left,
}

struct State {
    phase: Phase,
    fenced: bool,
    coordinator: Option<String>,
    last_heartbeat: Option<Instant>,
    /// The coordinator heard from us at or after this instant, so it expires us a
    /// session timeout after it at the earliest.
    alive_at: Option<Instant>,
    /// No rebalance had started at this instant, so one started since ends (without
    /// us, if we do not rejoin) a rebalance timeout after it at the earliest.
    stable_at: Option<Instant>,
}

/// What the member task and the watchdog share with the handle.
struct Shared {
    config: MembershipConfig,
    state: Mutex<State>,
    tx: watch::Sender<Assignment>,
    /// Wakes the watchdog when the deadline may have moved.
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the shards must be given up, if any are held.
    fn deadline(&self, state: &State) -> Option<Instant> {
        if state.fenced || self.tx.borrow().shards.is_empty() {
            return None;
        }
        let session = MembershipConfig::fence_after(self.config.session_timeout);
        let rebalance = MembershipConfig::fence_after(self.config.rebalance_timeout);
        match (state.alive_at, state.stable_at) {
            (Some(alive), Some(stable)) => Some((alive + session).min(stable + rebalance)),
            // Holding shards without proof of life cannot happen; fence at once.
            _ => Some(Instant::now()),
        }
    }

    fn is_fenced(&self) -> bool {
        self.lock().fenced
    }

    fn set_phase(&self, phase: Phase) {
        self.lock().phase = phase;
    }

    fn set_coordinator(&self, coordinator: Option<String>) {
        self.lock().coordinator = coordinator;
    }

    /// The coordinator answered a heartbeat sent at `sent`; `stable` when it did not
    /// report a rebalance.
    fn heartbeat_ok(&self, sent: Instant, stable: bool) {
        let mut state = self.lock();
        state.alive_at = Some(sent);
        if stable {
            state.stable_at = Some(sent);
        }
        state.last_heartbeat = Some(Instant::now());
        drop(state);
        self.changed.notify_one();
    }

    /// A new generation's shards; `joined` is when its JoinGroup answer arrived.
    fn publish(&self, assignment: Assignment, joined: Instant) {
        let mut state = self.lock();
        state.alive_at = Some(joined);
        state.stable_at = Some(joined);
        // SyncGroup's answer proves membership as a heartbeat's does.
        state.last_heartbeat = Some(Instant::now());
        state.fenced = false;
        state.phase = Phase::Stable;
        metrics::gauge!("mirrorgate_fleet_assigned_shards", "group" => self.config.group_id.clone())
            .set(assignment.shards.len() as f64);
        metrics::counter!("mirrorgate_fleet_rebalances_total", "group" => self.config.group_id.clone())
            .increment(1);
        self.tx.send_replace(assignment);
        drop(state);
        self.changed.notify_one();
    }

    /// Gives every shard up now (the member keeps trying to rejoin).
    fn fence(&self, reason: &str) {
        let mut state = self.lock();
        self.fence_locked(&mut state, reason);
    }

    fn fence_locked(&self, state: &mut State, reason: &str) {
        let current = self.tx.borrow().clone();
        if current.shards.is_empty() {
            return;
        }
        state.fenced = true;
        tracing::warn!(
            shards = current.shards.len(),
            generation = current.generation,
            "giving up every shard: {reason}"
        );
        metrics::counter!("mirrorgate_fleet_self_fenced_total", "group" => self.config.group_id.clone())
            .increment(1);
        metrics::gauge!("mirrorgate_fleet_assigned_shards", "group" => self.config.group_id.clone())
            .set(0.0);
        self.tx.send_replace(Assignment::none(&current.member_id));
    }

    fn describe(&self) -> FleetMember {
        let state = self.lock();
        let current = self.tx.borrow().clone();
        let state_name = match state.phase {
            Phase::Left => "left",
            _ if state.fenced => "fenced",
            Phase::Discovering => "discovering",
            Phase::Joining => "joining",
            Phase::Stable => "stable",
        };
        FleetMember {
            group_id: self.config.group_id.clone(),
            member_id: current.member_id.clone(),
            instance_id: self.config.instance_id.clone(),
            client_id: self.config.client_id.clone(),
            state: state_name,
            coordinator: state.coordinator.clone(),
            generation: current.generation,
            leader: current.leader,
            members: current.members,
            shards: current.shards.iter().copied().collect(),
            last_heartbeat_age_ms: state
                .last_heartbeat
                .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Fences when the deadline passes; runs beside the member task so that a call stuck
/// on a dead connection cannot delay the fence.
async fn watchdog(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let deadline = {
            let state = shared.lock();
            shared.deadline(&state)
        };
        let expired = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            // `notify_one` keeps a permit, so a change made before we wait is not lost.
            _ = shared.changed.notified() => {}
            _ = expired => {
                let mut state = shared.lock();
                if shared.deadline(&state).is_some_and(|at| at <= Instant::now()) {
                    shared.fence_locked(&mut state, "no heartbeat answered in time");
                }
            }
        }
    }
}

/// A running member of the fleet group. Dropping it (or cancelling the token given
/// to [`Membership::start`]) leaves the group: the shards are given up, then
/// LeaveGroup lets the others take them over at once.
pub struct Membership {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Membership {
    /// Validates `config` and starts the member on the current tokio runtime.
    pub fn start<C: Connector>(
        config: MembershipConfig,
        connector: C,
        cancel: CancellationToken,
    ) -> Result<Self, MembershipError> {
        config.validate()?;
        let (tx, _) = watch::channel(Assignment::none(""));
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                phase: Phase::Discovering,
                fenced: false,
                coordinator: None,
                last_heartbeat: None,
                alive_at: None,
                stable_at: None,
            }),
            tx,
            changed: Notify::new(),
        });
        // Our own token: dropping the handle stops this member, not the caller's others.
        let cancel = cancel.child_token();
        let span = tracing::info_span!(
            "fleet",
            group = %shared.config.group_id,
            member = tracing::field::Empty
        );
        let member = member::Member::new(shared.clone(), connector, cancel.clone(), span.clone());
        let dog = watchdog(shared.clone(), cancel.clone());
        let task = tokio::spawn(
            async move {
                tokio::join!(member.run(), dog);
            }
            .instrument(span),
        );
        Ok(Self {
            shared,
            cancel,
            task: Some(task),
        })
    }

    /// The shards held, updated on every change (a new generation, a fence, leaving).
    pub fn subscribe(&self) -> watch::Receiver<Assignment> {
        self.shared.tx.subscribe()
    }

    pub fn current(&self) -> Assignment {
        self.shared.tx.borrow().clone()
    }

    pub fn describe(&self) -> FleetMember {
        self.shared.describe()
    }

    /// Leaves the group and waits until LeaveGroup was sent (or failed).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // The task sees the token, gives the shards up and sends LeaveGroup.
        self.cancel.cancel();
    }
}

/// Creates the shards topic (compacted, and tiny: nothing is written to it) or checks
/// that the existing one has `partitions` partitions. `replication_factor` -1 takes
/// the broker's default.
pub async fn ensure_shards_topic(
    conn: &mut KafkaConnection,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) -> Result<(), MembershipError> {
    if !(1..=MAX_SHARDS).contains(&partitions) {
        return Err(MembershipError::Config(format!(
            "shards: {partitions} outside 1..={MAX_SHARDS}"
        )));
    }
    let configs = [("cleanup.policy", "compact"), ("segment.bytes", "1048576")];
    match admin::create_topic(conn, topic, partitions, replication_factor, &configs).await {
        Ok(()) => Ok(()),
        Err(AdminError::Kafka { code, .. }) if code == TOPIC_ALREADY_EXISTS => {
            // A topic created a moment ago (by another instance) may not be in this
            // broker's metadata yet.
            let mut attempts = 0;
            let actual = loop {
                let metadata = admin::metadata(conn, Some(&[topic])).await?;
                match admin::partition_count(&metadata, topic) {
                    Ok(count) => break count,
                    Err(code) if code == UNKNOWN_TOPIC_OR_PARTITION && attempts < 50 => {
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(code) => {
                        return Err(MembershipError::Kafka {
                            api: "Metadata",
                            code,
                        })
                    }
                }
            };
            if actual == partitions {
                Ok(())
            } else {
                Err(MembershipError::ShardsTopicMismatch {
                    topic: topic.to_string(),
                    expected: partitions,
                    actual,
                })
            }
        }
        Err(e) => Err(e.into()),
    }
}
