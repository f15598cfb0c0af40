//! The source side of a link: one fetcher per source broker, fetching every mirror
//! partition that broker leads in one READ_COMMITTED Fetch with an incremental fetch
//! session (KIP-227), so an idle partition costs nothing per request.
//!
//! A partition task subscribes at an offset and gets a bounded channel of
//! [`SourceData`]. The fetcher moves the partition's fetch offset past each whole
//! batch it delivers, so it fetches ahead while the task's produces are in flight. A
//! partition whose channel is full is left out of the session until it has room
//! again; every fetch asks for at most the link budget's room ([`ByteBudget`]) and
//! what the link's [`Throttle`] allows.
//!
//! Any partition error (out of range, leader moved, unknown partition) and any
//! connection error removes the partition: the error is delivered when the channel
//! has room, and the channel is closed, so the task subscribes again, which resolves
//! the leader anew from metadata and lands on the right broker's fetcher.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::budget::ByteBudget;
use super::now_ms;
use super::partition::SourceData;
use super::source::Source;
use super::task::PartitionStatus;
use super::throttle::Throttle;
use crate::kafka::admin;
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::error_code::{FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH};
use crate::kafka::record_batch::RecordBatches;

const FETCH_VERSION: i16 = 12;
const READ_COMMITTED: i8 = 1;
const FETCH_WAIT_MS: i32 = 500;
const FETCH_MAX_BYTES: usize = 8 << 20;
const PARTITION_MAX_BYTES: usize = 8 << 20;
/// Fetched chunks waiting per partition; more waits in the broker's log, not here.
const CHUNKS_PER_PARTITION: usize = 4;
const COMMANDS: usize = 64;
/// First delay after a failed fetch round; it doubles (with jitter) up to `RETRY_MAX`
/// while the source keeps failing.
const RETRY: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long to wait when every partition's channel is full.
const ALL_FULL_PAUSE: Duration = Duration::from_millis(20);
/// Delivered with the channel's close when the fetcher lost its connection.
pub const CONNECTION_LOST: i16 = -1;

type Key = (String, i32);

/// Everything the link's fetchers share; one per link.
pub struct LinkFetchers {
    link: String,
    source: Source,
    budget: ByteBudget,
    throttle: Arc<Throttle>,
    stop: CancellationToken,
    /// Command channel of the fetcher of each source broker (by address).
    brokers: Mutex<HashMap<String, mpsc::Sender<Subscribe>>>,
}

/// Link fetchers by link name.
#[derive(Default)]
pub struct Fetchers {
    links: Mutex<HashMap<String, Arc<LinkFetchers>>>,
    /// Kept apart from the fetchers, which are made anew when a link's source changes.
    throttles: Mutex<HashMap<String, Arc<Throttle>>>,
    /// Mirrors' own throttles, by mirror topic.
    mirror_throttles: Mutex<HashMap<String, Arc<Throttle>>>,
}

impl Fetchers {
    /// The throttle of `link` on this instance (unlimited until its rate is set).
    pub fn throttle(&self, link: &str) -> Arc<Throttle> {
        self.throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(link.to_string())
            .or_default()
            .clone()
    }

    /// The fetchers of `link`, made on first use (and anew when the link's source
    /// changed).
    pub fn of_link(
        &self,
        link: &str,
        source: &Source,
        max_bytes_in_flight: usize,
        stop: &CancellationToken,
    ) -> Arc<LinkFetchers> {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = links.get(link) {
            if existing.source.bootstrap == source.bootstrap
                && existing.budget.cap() == max_bytes_in_flight
            {
                return existing.clone();
            }
            existing.stop.cancel();
        }
        let fetchers = Arc::new(LinkFetchers {
            link: link.to_string(),
            source: source.clone(),
            budget: ByteBudget::new(max_bytes_in_flight),
            throttle: self.throttle(link),
            stop: stop.child_token(),
            brokers: Mutex::new(HashMap::new()),
        });
        links.insert(link.to_string(), fetchers.clone());
        fetchers
    }

    /// Stops the fetchers of `link` (deleted, or its way to the source changed: the
    /// next `of_link` makes new ones with the new settings).
    pub fn remove_link(&self, link: &str) {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(fetchers) = links.remove(link) {
            fetchers.stop.cancel();
        }
    }

    /// The throttle of mirror `topic` on this instance (unlimited until its rate is set).
    pub fn mirror_throttle(&self, topic: &str) -> Arc<Throttle> {
        self.mirror_throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(topic.to_string())
            .or_default()
            .clone()
    }

    /// Forgets the throttle of a mirror no longer copied here.
    pub fn remove_mirror_throttle(&self, topic: &str) {
        self.mirror_throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(topic);
    }

    /// Forgets the throttle of a link deleted.
    pub fn remove_throttle(&self, link: &str) {
        self.throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(link);
    }
}

struct Subscribe {
    topic: String,
    partition: i32,
    offset: i64,
    tx: mpsc::Sender<SourceData>,
    status: Arc<PartitionStatus>,
    last_fetch: metrics::Gauge,
    throttle: Arc<Throttle>,
}

impl LinkFetchers {
    /// Starts fetching `topic`/`partition` at `offset` on its leader's fetcher. A later
    /// subscription of the same partition replaces this one.
    /// `throttle` is the mirror's own (unlimited when it has none).
    pub async fn subscribe(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        status: Arc<PartitionStatus>,
        last_fetch: metrics::Gauge,
        throttle: Arc<Throttle>,
    ) -> Result<mpsc::Receiver<SourceData>, ClientError> {
        if self.stop.is_cancelled() {
            // Replaced (the link's source or budget changed): the caller starts over
            // with the link's current fetchers.
            return Err(ClientError::Closed);
        }
        let mut any = self.source.connect_any().await?;
        let metadata = admin::metadata(&mut any, Some(&[topic])).await?;
        let leader = admin::leader_of(&metadata, topic, partition).ok_or_else(|| {
            ClientError::Protocol(format!("no leader for {topic}-{partition} on the source"))
        })?;
        let (tx, rx) = mpsc::channel(CHUNKS_PER_PARTITION);
        let mut command = Subscribe {
            topic: topic.to_string(),
            partition,
            offset,
            tx,
            status,
            last_fetch,
            throttle,
        };
        // Twice at most: a fetcher that ended is replaced once.
        for _ in 0..2 {
            let sender = self.broker(&leader);
            match sender.send(command).await {
                Ok(()) => return Ok(rx),
                Err(mpsc::error::SendError(back)) => {
                    command = back;
                    self.forget_broker(&leader);
                }
            }
        }
        Err(ClientError::Closed)
    }

    fn broker(&self, addr: &str) -> mpsc::Sender<Subscribe> {
        let mut brokers = self
            .brokers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = brokers.get(addr).filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, commands) = mpsc::channel(COMMANDS);
        let fetcher = BrokerFetcher {
            addr: addr.to_string(),
            source: self.source.clone(),
            budget: self.budget.clone(),
            throttle: self.throttle.clone(),
            commands,
            slots: HashMap::new(),
            session: Session::default(),
            conn: None,
        };
        let span = tracing::info_span!("source_fetcher", link = %self.link, broker = %addr);
        tokio::spawn(fetcher.run(self.stop.clone()).instrument(span));
        brokers.insert(addr.to_string(), sender.clone());
        sender
    }

    fn forget_broker(&self, addr: &str) {
        self.brokers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(addr);
    }
}

struct Slot {
    offset: i64,
    tx: mpsc::Sender<SourceData>,
    status: Arc<PartitionStatus>,
    last_fetch: metrics::Gauge,
    /// The mirror's own throttle.
    throttle: Arc<Throttle>,
    high_watermark: i64,
    log_start_offset: i64,
}

/// The broker's view of our fetch session: its id, the next epoch, and the offset and
/// byte limit last sent for each partition in it.
#[derive(Default)]
struct Session {
    id: i32,
    epoch: i32,
    sent: HashMap<Key, (i64, usize)>,
}

impl Session {
    fn reset(&mut self) {
        *self = Session::default();
    }

    fn is_full(&self) -> bool {
        self.id == 0
    }
}

struct BrokerFetcher {
    addr: String,
    source: Source,
    budget: ByteBudget,
    throttle: Arc<Throttle>,
    commands: mpsc::Receiver<Subscribe>,
    slots: HashMap<Key, Slot>,
    session: Session,
    conn: Option<KafkaConnection>,
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

impl BrokerFetcher {
    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new(RETRY, RETRY_MAX, Jitter::Equal);
        loop {
            while let Ok(command) = self.commands.try_recv() {
                self.add(command);
            }
            self.slots.retain(|_, slot| !slot.tx.is_closed());
            if self.slots.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    command = self.commands.recv() => match command {
                        Some(command) => self.add(command),
                        None => return,
                    },
                }
                continue;
            }
            let room = tokio::select! {
                _ = stop.cancelled() => return,
                room = self.budget.wait_for_room() => room,
            };
            let room = tokio::select! {
                _ = stop.cancelled() => return,
                allowed = self.throttle.wait_for_tokens() => room.min(allowed),
            };
            let fetched = tokio::select! {
                _ = stop.cancelled() => return,
                fetched = self.fetch_round(room) => fetched,
            };
            if fetched.is_ok() {
                backoff.reset();
            }
            match fetched {
                Ok(true) => {}
                Ok(false) => tokio::time::sleep(ALL_FULL_PAUSE).await,
                Err(e) => {
                    tracing::warn!(error = %e, "source fetch failed; partitions move on");
                    self.conn = None;
                    self.session.reset();
                    self.drop_all(CONNECTION_LOST);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    fn add(&mut self, command: Subscribe) {
        self.slots.insert(
            (command.topic, command.partition),
            Slot {
                offset: command.offset,
                tx: command.tx,
                status: command.status,
                last_fetch: command.last_fetch,
                throttle: command.throttle,
                high_watermark: -1,
                log_start_offset: -1,
            },
        );
    }

    /// Tells every partition it has to subscribe again (closing its channel).
    fn drop_all(&mut self, error_code: i16) {
        for (_, slot) in self.slots.drain() {
            let _ = slot.tx.try_send(error_data(slot.offset, error_code));
        }
    }

    /// One Fetch with at most `room` bytes. False when no partition had room for
    /// data, so nothing was asked.
    async fn fetch_round(&mut self, room: usize) -> Result<bool, ClientError> {
        let Some(request) = self.request(room) else {
            return Ok(false);
        };
        if self.conn.is_none() {
            self.conn = Some(self.source.connect(&self.addr).await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(ClientError::Closed);
        };
        let response = conn.call(&request, FETCH_VERSION).await?;
        match response.error_code {
            0 => {}
            FETCH_SESSION_ID_NOT_FOUND | INVALID_FETCH_SESSION_EPOCH => {
                // The broker dropped or lost track of the session: start a full one.
                tracing::debug!(
                    error = response.error_code,
                    "fetch session reset; next fetch is full"
                );
                self.session.reset();
                return Ok(true);
            }
            code => {
                return Err(ClientError::Protocol(format!(
                    "fetch failed with error {code}"
                )))
            }
        }
        self.session.id = response.session_id;
        self.session.epoch = if response.session_id == 0 {
            0
        } else {
            // Epochs run 1..=i32::MAX, then wrap to 1 (0 opens a new session).
            self.session.epoch.checked_add(1).unwrap_or(1).max(1)
        };
        if self.session.id == 0 {
            self.session.sent.clear();
        }
        let fetched = self.deliver(response);
        self.throttle.take(fetched);
        Ok(true)
    }

    /// The next Fetch: everything with room on a full fetch; on an incremental one
    /// only partitions added or moved, and partitions to forget.
    fn request(&mut self, room: usize) -> Option<FetchRequest> {
        let partition_max = PARTITION_MAX_BYTES.min(self.budget.cap());
        // A partition whose mirror's bucket is empty waits out of the session, as one
        // whose channel is full.
        let wanted: HashMap<Key, (i64, usize)> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.tx.capacity() > 0)
            .map(|(key, slot)| (key, slot.offset, slot.throttle.available()))
            .filter(|(_, _, allowed)| *allowed > 0)
            .map(|(key, offset, allowed)| (key.clone(), (offset, partition_max.min(allowed))))
            .collect();
        if wanted.is_empty() {
            return None;
        }
        let full = self.session.is_full();
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for ((topic, partition), (offset, max)) in &wanted {
            let sent = self.session.sent.get(&(topic.clone(), *partition));
            if !full && sent == Some(&(*offset, *max)) {
                continue;
            }
            topics.entry(topic).or_default().push(
                FetchPartition::default()
                    .with_partition(*partition)
                    .with_fetch_offset(*offset)
                    .with_partition_max_bytes(clamp(*max)),
            );
        }
        let mut forgotten: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        if !full {
            for (topic, partition) in self.session.sent.keys() {
                if !wanted.contains_key(&(topic.clone(), *partition)) {
                    forgotten.entry(topic).or_default().push(*partition);
                }
            }
        }
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(clamp(room.min(FETCH_MAX_BYTES)))
            .with_isolation_level(READ_COMMITTED)
            .with_session_id(self.session.id)
            .with_session_epoch(self.session.epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        FetchTopic::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
            .with_forgotten_topics_data(
                forgotten
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ForgottenTopic::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        self.session.sent = wanted;
        Some(request)
    }

    /// Hands each partition its data and moves its fetch offset past the whole
    /// batches delivered. Returns the record bytes fetched.
    fn deliver(&mut self, response: FetchResponse) -> usize {
        let mut fetched = 0;
        let now = now_ms();
        for (key, slot) in &self.slots {
            if self.session.sent.contains_key(key) {
                slot.status.last_fetch_ms.store(now, Ordering::Relaxed);
                slot.last_fetch.set(now as f64 / 1000.0);
            }
        }
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for data in topic.partitions {
                let key = (name.clone(), data.partition_index);
                let Some(slot) = self.slots.get_mut(&key) else {
                    continue;
                };
                if data.error_code != 0 {
                    let _ = slot.tx.try_send(error_data(slot.offset, data.error_code));
                    self.slots.remove(&key);
                    continue;
                }
                let records = data.records.unwrap_or_default();
                if records.is_empty()
                    && data.high_watermark == slot.high_watermark
                    && data.log_start_offset == slot.log_start_offset
                {
                    continue;
                }
                // A response may end in part of a batch, fetched again next time: only
                // whole batches count against the throttles.
                let (next, whole) = RecordBatches::new(records.clone())
                    .map_while(Result::ok)
                    .fold((slot.offset, 0), |(next, whole), b| {
                        (b.next_offset().max(next), whole + b.bytes().len())
                    });
                slot.status
                    .source_high_watermark
                    .store(data.high_watermark, Ordering::Relaxed);
                let size = records.len();
                let charge = (size > 0).then(|| self.budget.charge(size));
                let chunk = SourceData {
                    fetch_offset: slot.offset,
                    error_code: 0,
                    records,
                    high_watermark: data.high_watermark,
                    log_start_offset: data.log_start_offset,
                    aborted: data.aborted_transactions.unwrap_or_default(),
                    charge,
                };
                match slot.tx.try_send(chunk) {
                    Ok(()) => {
                        fetched += whole;
                        slot.throttle.take(whole);
                        slot.offset = next;
                        slot.high_watermark = data.high_watermark;
                        slot.log_start_offset = data.log_start_offset;
                    }
                    // Fetched again once the task has room; the budget comes back now.
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.slots.remove(&key);
                    }
                }
            }
        }
        fetched
    }
}

/// A partition error (or [`CONNECTION_LOST`]) for the task to act on.
fn error_data(fetch_offset: i64, error_code: i16) -> SourceData {
    SourceData {
        fetch_offset,
        error_code,
        records: bytes::Bytes::new(),
        high_watermark: -1,
        log_start_offset: -1,
        aborted: Vec::new(),
        charge: None,
    }
}

/// A byte count as the protocol's i32.
fn clamp(bytes: usize) -> i32 {
    i32::try_from(bytes).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use kafka_protocol::messages::FetchRequest;
    use tokio::sync::mpsc;

    use super::{BrokerFetcher, ByteBudget, Duration, Session, SourceData, Subscribe, Throttle};
    use crate::replicator::link_config::LinkConfig;
    use crate::replicator::source::Source;

    fn fetcher() -> BrokerFetcher {
        let config = LinkConfig::from_properties(BTreeMap::from([(
            "bootstrap.servers".to_string(),
            "127.0.0.1:1".to_string(),
        )]))
        .expect("link config");
        let (_, commands) = mpsc::channel(1);
        BrokerFetcher {
            addr: "127.0.0.1:1".into(),
            source: Source::from_config(&config).expect("source"),
            budget: ByteBudget::new(1 << 20),
            throttle: Arc::default(),
            commands,
            slots: Default::default(),
            session: Session::default(),
            conn: None,
        }
    }

    fn subscribe(
        fetcher: &mut BrokerFetcher,
        partition: i32,
        offset: i64,
    ) -> mpsc::Receiver<SourceData> {
        subscribe_throttled(fetcher, partition, offset, Arc::default())
    }

    fn subscribe_throttled(
        fetcher: &mut BrokerFetcher,
        partition: i32,
        offset: i64,
        throttle: Arc<Throttle>,
    ) -> mpsc::Receiver<SourceData> {
        let (tx, rx) = mpsc::channel(2);
        fetcher.add(Subscribe {
            topic: "t".into(),
            partition,
            offset,
            tx,
            status: Arc::default(),
            last_fetch: metrics::Gauge::noop(),
            throttle,
        });
        rx
    }

    /// (partition, fetch offset) asked for, and partitions forgotten.
    fn asked(request: &FetchRequest) -> (Vec<(i32, i64)>, Vec<i32>) {
        let mut partitions: Vec<(i32, i64)> = request
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| (p.partition, p.fetch_offset))
            .collect();
        partitions.sort_unstable();
        let mut forgotten: Vec<i32> = request
            .forgotten_topics_data
            .iter()
            .flat_map(|t| t.partitions.iter().copied())
            .collect();
        forgotten.sort_unstable();
        (partitions, forgotten)
    }

    /// As if the broker had answered with a session id.
    fn open_session(fetcher: &mut BrokerFetcher) {
        fetcher.session.id = 7;
        fetcher.session.epoch = 1;
    }

    #[test]
    fn a_full_fetch_asks_for_everything_then_only_what_changed() {
        let mut fetcher = fetcher();
        let _p0 = subscribe(&mut fetcher, 0, 10);
        let _p1 = subscribe(&mut fetcher, 1, 20);
        let first = fetcher.request(1000).expect("request");
        assert_eq!((first.session_id, first.session_epoch), (0, 0));
        assert_eq!(asked(&first), (vec![(0, 10), (1, 20)], vec![]));
        assert_eq!(first.max_bytes, 1000, "at most the budget's room");

        open_session(&mut fetcher);
        let idle = fetcher.request(1000).expect("request");
        assert_eq!((idle.session_id, idle.session_epoch), (7, 1));
        assert_eq!(asked(&idle), (vec![], vec![]), "nothing changed");

        // Data delivered for partition 1 moved its offset; partition 2 is new.
        if let Some(slot) = fetcher.slots.get_mut(&("t".to_string(), 1)) {
            slot.offset = 25;
        }
        let _p2 = subscribe(&mut fetcher, 2, 0);
        let next = fetcher.request(1000).expect("request");
        assert_eq!(asked(&next), (vec![(1, 25), (2, 0)], vec![]));
    }

    #[test]
    fn closed_and_full_partitions_are_forgotten_and_come_back_with_room() {
        let mut fetcher = fetcher();
        let p0 = subscribe(&mut fetcher, 0, 10);
        let mut p1 = subscribe(&mut fetcher, 1, 20);
        fetcher.request(1000).expect("full fetch");
        open_session(&mut fetcher);

        drop(p0);
        // Partition 1's task is behind: its channel is full.
        let tx = fetcher.slots[&("t".to_string(), 1)].tx.clone();
        for _ in 0..2 {
            tx.try_send(super::error_data(20, 0)).expect("room");
        }
        fetcher.slots.retain(|_, slot| !slot.tx.is_closed());
        assert!(fetcher.request(1000).is_none(), "no partition has room");
        let _p2 = subscribe(&mut fetcher, 2, 5);
        let request = fetcher.request(1000).expect("request");
        assert_eq!(asked(&request), (vec![(2, 5)], vec![0, 1]));

        // The task caught up: partition 1 is asked for again at its offset.
        while p1.try_recv().is_ok() {}
        let request = fetcher.request(1000).expect("request");
        assert_eq!(asked(&request), (vec![(1, 20)], vec![]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_mirror_out_of_tokens_waits_out_of_the_session_without_holding_up_others() {
        let mut fetcher = fetcher();
        let throttle = Arc::new(Throttle::default());
        throttle.set_rate(Some(100_000));
        let _p0 = subscribe_throttled(&mut fetcher, 0, 10, throttle.clone());
        let _p1 = subscribe(&mut fetcher, 1, 20);
        let request = fetcher.request(1 << 20).expect("request");
        assert_eq!(
            asked(&request),
            (vec![(1, 20)], vec![]),
            "the bucket starts empty"
        );

        open_session(&mut fetcher);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let request = fetcher.request(1 << 20).expect("request");
        assert_eq!(asked(&request), (vec![(0, 10)], vec![]));
        let max = request.topics[0].partitions[0].partition_max_bytes;
        assert_eq!(max, 100_000, "at most what the bucket holds");

        throttle.take(100_000);
        let request = fetcher.request(1 << 20).expect("request");
        assert_eq!(
            asked(&request),
            (vec![], vec![0]),
            "spent: out of the session"
        );
    }

    #[test]
    fn a_reset_session_fetches_everything_again() {
        let mut fetcher = fetcher();
        let _p0 = subscribe(&mut fetcher, 0, 10);
        fetcher.request(1000).expect("full fetch");
        open_session(&mut fetcher);
        assert_eq!(asked(&fetcher.request(1000).expect("request")).0, vec![]);
        fetcher.session.reset();
        let full = fetcher.request(1000).expect("request");
        assert_eq!((full.session_id, full.session_epoch), (0, 0));
        assert_eq!(asked(&full).0, vec![(0, 10)]);
    }
}
