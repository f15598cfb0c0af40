//! Transactions of producers writing to forwarded mirrors (`mirror.produce.mode=forward`).
//!
//! A transactional client's InitProducerId goes to the destination as always, so its
//! producer id and epoch are the destination's. Its first AddPartitionsToTxn naming
//! forwarded mirrors starts a session of its transactional id on the source's
//! coordinator (InitProducerId with that id) and records it for the fleet as a
//! `producer/` record with the transactional id (first record of a key wins). From then
//! on that session carries the client's transactions: partitions are added on the
//! source, transactional batches are forwarded with the session's producer id (the
//! client's sequences kept), and EndTxn commits or aborts on the source. The copier
//! brings committed records to the mirror at their offsets, as it does any other.
//!
//! A transaction is forwarded only when every partition it adds is a forwarded mirror
//! of that one link; one also naming a destination topic is refused, since it could not
//! end as one. A cut-over lets the transactions open on the source end there (their
//! producers' writes and EndTxn pass its fence) and waits for them before it watches
//! the source; new ones wait at the fence. After the flip the same producer session's
//! next transaction runs on the destination: its coordinator has had the session all
//! along (with nothing in it), and the promoted topic has no state for its producer id,
//! so its sequences are taken as they come. No producer is told anything.
//!
//! Which session has a transaction open on the source is known to the instance that
//! carried its AddPartitionsToTxn (a client sends those and EndTxn to one coordinator
//! connection); another instance asks the source.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kafka_protocol::messages::{DescribeTransactionsRequest, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;

use super::catalog::{producer_key, SourceProducer};
use super::catalog_feed::CatalogView;
use super::source::Source;
use super::{store, Destination};
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::KafkaConnection;
use crate::kafka::error_code::{
    COORDINATOR_NOT_AVAILABLE, INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE, NOT_COORDINATOR,
    PRODUCER_FENCED, TRANSACTIONAL_ID_NOT_FOUND, UNKNOWN_PRODUCER_ID,
};
use crate::kafka::producer::ProducerIdentity;
use crate::kafka::transactions::{self, is_retriable};

/// The source session's transaction timeout (Java's default for clients): a
/// transaction left open by an instance that died is aborted by the source after it.
pub(super) const SOURCE_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long starting a session waits for a coordinator that is loading or moving.
const SETUP_WAIT: Duration = Duration::from_secs(8);
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long a new session's record is waited for, read back from the metadata topic.
const RECORD_WAIT: Duration = Duration::from_secs(10);
/// Coordinators remembered per link (one per transactional id), and sessions known to
/// have a transaction open on the source.
const MAX_COORDINATORS: usize = 65_536;
const MAX_OPEN: usize = 65_536;
const DESCRIBE_TRANSACTIONS_VERSION: i16 = 0;
/// Transactional ids described per request.
const DESCRIBE_BATCH: usize = 1_000;
const TRANSACTION_KEY: i8 = 1;

/// One link's transactions on its source: sessions, coordinators, connections.
pub(super) struct SourceTxns {
    link: String,
    source: Source,
    dest: Destination,
    catalog: watch::Receiver<Arc<CatalogView>>,
    /// Transactional id -> its coordinator on the source.
    coordinators: Mutex<HashMap<String, String>>,
    /// One idle connection per coordinator, taken for a call and put back after it.
    idle: Mutex<HashMap<String, KafkaConnection>>,
    /// Client sessions (id, epoch) whose transaction this instance began on the source
    /// and has not seen end.
    open: Mutex<HashSet<(i64, i16)>>,
}

/// A recorded session: the client's transactional id and the source's producer.
pub(super) struct Session {
    pub transactional_id: String,
    pub producer: ProducerIdentity,
}

impl SourceTxns {
    pub(super) fn new(
        link: String,
        source: Source,
        dest: Destination,
        catalog: watch::Receiver<Arc<CatalogView>>,
    ) -> Self {
        Self {
            link,
            source,
            dest,
            catalog,
            coordinators: Mutex::default(),
            idle: Mutex::default(),
            open: Mutex::default(),
        }
    }

    /// True when this instance began the session's transaction on the source and has
    /// not seen it end.
    pub(super) fn open_here(&self, id: i64, epoch: i16) -> bool {
        self.lock_open().contains(&(id, epoch))
    }

    /// Whether the session's transaction is open on the source, asked of its
    /// coordinator (for a session another instance began).
    pub(super) async fn open_there(&self, id: i64, epoch: i16) -> Result<bool, String> {
        let Some(session) = self.session_of(id, epoch) else {
            return Ok(false);
        };
        let (addr, mut conn) = self.coordinator(&session.transactional_id).await?;
        let txn = session.transactional_id;
        let states = describe(&mut conn, std::slice::from_ref(&txn)).await?;
        self.give_back(&txn, addr, conn, [0]);
        Ok(states
            .get(&txn)
            .is_some_and(|d| d.is_open() && d.producer_id == session.producer.id))
    }

    /// The source session of the client's transactional producer (`id`, `epoch`).
    pub(super) fn session_of(&self, id: i64, epoch: i16) -> Option<Session> {
        let view = self.catalog.borrow();
        session_in(&view, &self.link, id, epoch)
    }

    /// Adds the client's partitions (source topic names) to its transaction on the
    /// source, starting its session there first when it has none: a code per partition.
    pub(super) async fn add_partitions(
        &self,
        txn: &str,
        id: i64,
        epoch: i16,
        topics: &[(String, Vec<i32>)],
    ) -> Vec<Vec<i16>> {
        let all = |code: i16| -> Vec<Vec<i16>> {
            topics.iter().map(|(_, p)| vec![code; p.len()]).collect()
        };
        let session = match self.session_of(id, epoch) {
            Some(s) if s.transactional_id == txn => s.producer,
            // Abortable for AddPartitionsToTxn and EndTxn: the client re-initialises with
            // a bumped epoch (Java's producer, transaction version 1). In a Produce answer
            // it would be retried instead: there INVALID_TXN_STATE.
            Some(_) => return all(UNKNOWN_PRODUCER_ID),
            None => match self.begin(txn, id, epoch).await {
                Ok(session) => session,
                Err(code) => return all(code),
            },
        };
        let (addr, mut conn) = match self.coordinator(txn).await {
            Ok(found) => found,
            Err(reason) => {
                tracing::debug!(link = %self.link, txn, %reason, "no source coordinator");
                return all(COORDINATOR_NOT_AVAILABLE);
            }
        };
        match transactions::add_partitions(&mut conn, txn, session, topics).await {
            Ok(codes) => {
                self.give_back(txn, addr, conn, codes.iter().flatten().copied());
                if codes.iter().flatten().any(|c| *c == 0) {
                    let mut open = self.lock_open();
                    if open.len() >= MAX_OPEN {
                        // Forgotten ones are asked of the source instead.
                        open.clear();
                    }
                    open.insert((id, epoch));
                }
                let told = |code| match is_session_gone(code) {
                    true => UNKNOWN_PRODUCER_ID,
                    false => code,
                };
                codes
                    .into_iter()
                    .map(|row| row.into_iter().map(told).collect())
                    .collect()
            }
            Err(e) => {
                tracing::debug!(link = %self.link, txn, error = %e, "AddPartitionsToTxn to the source failed");
                all(COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// Commits or aborts the client's transaction on the source: the client's code.
    pub(super) async fn end(&self, txn: &str, id: i64, epoch: i16, committed: bool) -> i16 {
        let session = match self.session_of(id, epoch) {
            Some(s) if s.transactional_id == txn => s.producer,
            _ => return UNKNOWN_PRODUCER_ID,
        };
        let (addr, mut conn) = match self.coordinator(txn).await {
            Ok(found) => found,
            Err(_) => return COORDINATOR_NOT_AVAILABLE,
        };
        match transactions::end(&mut conn, txn, session, committed).await {
            Ok(code) => {
                self.give_back(txn, addr, conn, [code]);
                if !is_retriable(code) {
                    self.lock_open().remove(&(id, epoch));
                }
                end_answer(code, committed)
            }
            // Retried by the client; ending twice the same way is answered as done.
            Err(_) => COORDINATOR_NOT_AVAILABLE,
        }
    }

    /// A session of `txn` on the source for the client's (`id`, `epoch`), recorded for
    /// the fleet; the fleet's record wins over this one when another instance was first.
    async fn begin(&self, txn: &str, id: i64, epoch: i16) -> Result<ProducerIdentity, i16> {
        match self.open_on_destination(txn).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(link = %self.link, txn, "a transaction writing to the destination also names a forwarded mirror: refused (one transaction cannot span two clusters)");
                return Err(INVALID_TXN_STATE);
            }
            Err(reason) => {
                tracing::debug!(link = %self.link, txn, %reason, "cannot ask the destination about the transaction");
                return Err(COORDINATOR_NOT_AVAILABLE);
            }
        }
        let fresh = self.init_session(txn).await?;
        let key = producer_key(&self.link, id, epoch);
        let value = SourceProducer {
            id: fresh.id,
            epoch: fresh.epoch,
            transactional_id: Some(txn.to_string()),
        };
        let view = match store::put_producer(&self.dest, &key, &value).await {
            Ok(offset) => super::catalog_feed::applied(self.catalog.clone(), offset, RECORD_WAIT)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match view {
            Ok(view) => match session_in(&view, &self.link, id, epoch) {
                Some(s) if s.transactional_id == txn => Ok(s.producer),
                _ => Err(UNKNOWN_PRODUCER_ID),
            },
            Err(e) => {
                // Other instances would not know the session: fail closed, retriably.
                tracing::warn!(link = %self.link, txn, error = %e, "transactional session not recorded for the fleet");
                Err(COORDINATOR_NOT_AVAILABLE)
            }
        }
    }

    /// InitProducerId with `txn` on the source, asked again while its coordinator is
    /// loading or moving.
    async fn init_session(&self, txn: &str) -> Result<ProducerIdentity, i16> {
        let deadline = tokio::time::Instant::now() + SETUP_WAIT;
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX, Jitter::Equal);
        loop {
            let code = match self.coordinator(txn).await {
                Ok((addr, mut conn)) => {
                    match transactions::init_session(&mut conn, txn, SOURCE_TRANSACTION_TIMEOUT)
                        .await
                    {
                        Ok(Ok(session)) => {
                            self.give_back(txn, addr, conn, [0]);
                            return Ok(session);
                        }
                        Ok(Err(code)) => {
                            self.give_back(txn, addr, conn, [code]);
                            code
                        }
                        Err(_) => COORDINATOR_NOT_AVAILABLE,
                    }
                }
                Err(_) => COORDINATOR_NOT_AVAILABLE,
            };
            let delay = backoff.next_delay();
            if !is_retriable(code) || tokio::time::Instant::now() + delay >= deadline {
                return Err(code);
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// True when the destination's coordinator has a transaction of `txn` open with
    /// partitions or offsets in it: it would end apart from a forwarded one.
    async fn open_on_destination(&self, txn: &str) -> Result<bool, String> {
        let mut any = self.dest.connect_any().await.map_err(|e| e.to_string())?;
        let addr = transactions::find_coordinator(&mut any, txn)
            .await
            .map_err(|e| e.to_string())??;
        let mut conn = self.dest.connect(&addr).await.map_err(|e| e.to_string())?;
        let states = describe(&mut conn, &[txn.to_string()]).await?;
        Ok(states
            .get(txn)
            .is_some_and(|d| d.is_open() && d.partitions > 0))
    }

    /// A connection to `txn`'s coordinator on the source (an idle one when there is).
    async fn coordinator(&self, txn: &str) -> Result<(String, KafkaConnection), String> {
        let known = self.lock_coordinators().get(txn).cloned();
        let addr = match known {
            Some(addr) => addr,
            None => {
                let mut any = self.source.connect_any().await.map_err(|e| e.to_string())?;
                let addr = transactions::find_coordinator(&mut any, txn)
                    .await
                    .map_err(|e| e.to_string())??;
                let mut coordinators = self.lock_coordinators();
                if coordinators.len() >= MAX_COORDINATORS {
                    coordinators.clear();
                }
                coordinators.insert(txn.to_string(), addr.clone());
                addr
            }
        };
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
        let conn = match idle {
            Some(conn) => conn,
            None => self.source.connect(&addr).await.map_err(|e| {
                self.lock_coordinators().remove(txn);
                e.to_string()
            })?,
        };
        Ok((addr, conn))
    }

    /// Keeps the connection for the next call; forgets the coordinator when it said it
    /// no longer is one.
    fn give_back(
        &self,
        txn: &str,
        addr: String,
        conn: KafkaConnection,
        codes: impl IntoIterator<Item = i16>,
    ) {
        if codes
            .into_iter()
            .any(|c| c == NOT_COORDINATOR || c == COORDINATOR_NOT_AVAILABLE)
        {
            self.lock_coordinators().remove(txn);
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(addr)
            .or_insert(conn);
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashSet<(i64, i16)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_coordinators(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.coordinators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn session_in(view: &CatalogView, link: &str, id: i64, epoch: i16) -> Option<Session> {
    let recorded = view.catalog.source_producer(link, id, epoch)?;
    Some(Session {
        transactional_id: recorded.transactional_id?,
        producer: ProducerIdentity {
            id: recorded.id,
            epoch: recorded.epoch,
        },
    })
}

/// What the source says when the session is no longer the transaction's (a cut-over
/// closed it, or a newer session fenced it). The client is told with an abortable
/// error instead, so it aborts and re-initialises; the destination's coordinator still
/// fences zombies by epoch then.
pub(super) fn is_session_gone(code: i16) -> bool {
    matches!(
        code,
        INVALID_TXN_STATE | INVALID_PRODUCER_EPOCH | PRODUCER_FENCED
    )
}

/// The client's answer to its EndTxn: a commit of a closed transaction fails
/// abortably; its abort is done (nothing of it was committed).
fn end_answer(code: i16, committed: bool) -> i16 {
    match (is_session_gone(code), committed) {
        (true, true) => UNKNOWN_PRODUCER_ID,
        (true, false) => 0,
        (false, _) => code,
    }
}

/// The transactional ids among `sessions` with a transaction open on `source` (in
/// progress, or its end not yet written): a cut-over waits for them under its fence.
pub(super) async fn open_on_source(
    source: &Source,
    sessions: &[(String, SourceProducer)],
) -> Result<Vec<String>, String> {
    let ids: Vec<String> = sessions.iter().map(|(txn, _)| txn.clone()).collect();
    let mut any = source.connect_any().await.map_err(|e| e.to_string())?;
    let found = crate::kafka::groups::find_coordinators_of(&mut any, TRANSACTION_KEY, &ids)
        .await
        .map_err(|e| format!("source transaction coordinators: {e}"))?;
    let mut by_coordinator: HashMap<String, Vec<String>> = HashMap::new();
    for txn in ids {
        match found.get(&txn) {
            Some(Ok(addr)) => by_coordinator.entry(addr.clone()).or_default().push(txn),
            Some(Err(e)) => return Err(format!("coordinator of '{txn}': {e}")),
            None => return Err(format!("no coordinator of '{txn}'")),
        }
    }
    let mut open = Vec::new();
    for (addr, txns) in by_coordinator {
        let mut conn = source.connect(&addr).await.map_err(|e| e.to_string())?;
        for chunk in txns.chunks(DESCRIBE_BATCH) {
            let states = describe(&mut conn, chunk).await?;
            open.extend(
                states
                    .into_iter()
                    .filter(|(_, described)| described.is_open())
                    .map(|(txn, _)| txn),
            );
        }
    }
    open.sort();
    Ok(open)
}

/// Transaction states a coordinator gives while a transaction is not ended.
fn is_open(state: &str) -> bool {
    matches!(state, "Ongoing" | "PrepareCommit" | "PrepareAbort")
}

/// A transaction as its coordinator describes it.
struct Described {
    state: String,
    producer_id: i64,
    /// Partitions in the transaction now.
    partitions: usize,
}

impl Described {
    fn is_open(&self) -> bool {
        is_open(&self.state)
    }
}

/// Each transactional id's transaction, as its coordinator describes it.
async fn describe(
    conn: &mut KafkaConnection,
    txns: &[String],
) -> Result<HashMap<String, Described>, String> {
    let request = DescribeTransactionsRequest::default().with_transactional_ids(
        txns.iter()
            .map(|t| TransactionalId(StrBytes::from_string(t.clone())))
            .collect(),
    );
    let response = conn
        .call(&request, DESCRIBE_TRANSACTIONS_VERSION)
        .await
        .map_err(|e| e.to_string())?;
    let mut states = HashMap::new();
    for s in response.transaction_states {
        match s.error_code {
            0 => {
                let partitions = s.topics.iter().map(|t| t.partitions.len()).sum();
                states.insert(
                    s.transactional_id.0.to_string(),
                    Described {
                        state: s.transaction_state.to_string(),
                        producer_id: s.producer_id.0,
                        partitions,
                    },
                );
            }
            // Expired or never used there: nothing open.
            TRANSACTIONAL_ID_NOT_FOUND => {}
            code => {
                return Err(format!(
                    "transaction '{}' not described (error {code})",
                    s.transactional_id.0
                ))
            }
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::end_answer;
    use crate::kafka::error_code::{
        CONCURRENT_TRANSACTIONS, INVALID_TXN_STATE, PRODUCER_FENCED, UNKNOWN_PRODUCER_ID,
    };

    #[test]
    fn a_commit_of_a_closed_transaction_fails_abortably_and_its_abort_is_done() {
        assert_eq!(end_answer(INVALID_TXN_STATE, true), UNKNOWN_PRODUCER_ID);
        assert_eq!(end_answer(PRODUCER_FENCED, true), UNKNOWN_PRODUCER_ID);
        assert_eq!(end_answer(INVALID_TXN_STATE, false), 0);
        assert_eq!(end_answer(PRODUCER_FENCED, false), 0);
        assert_eq!(
            end_answer(CONCURRENT_TRANSACTIONS, false),
            CONCURRENT_TRANSACTIONS
        );
        assert_eq!(end_answer(0, true), 0);
    }
}
