//! Fleet membership against the real destination cluster: three members in this
//! process share the shards of an internal topic through Kafka's group protocol;
//! Kafka's `kafka-consumer-groups` describes them; a member that leaves hands its
//! shards over at once; a member cut off from the cluster (its connections silently
//! dropping every byte) gives its shards up before the coordinator expires it, the
//! others then take them, and it rejoins once the network is back.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::replication::describe_group;
use common::{destination, eventually_every_async, unique};
use mirrorgate::kafka::client::KafkaConnection;
use mirrorgate::kafka::membership::{
    ensure_shards_topic, Assignment, ConnectFuture, Membership, MembershipConfig, MembershipError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const SHARDS: i32 = 64;
const SESSION: Duration = Duration::from_secs(6);

fn config(group: &str, topic: &str, client_id: &str) -> MembershipConfig {
    let mut c = MembershipConfig::new(
        group,
        client_id,
        destination()
            .bootstrap
            .split(',')
            .map(String::from)
            .collect(),
    );
    c.shards_topic = topic.to_string();
    c.shards = SHARDS;
    c.session_timeout = SESSION;
    c.rebalance_timeout = Duration::from_secs(10);
    c.heartbeat_interval = SESSION / 3;
    c
}

fn plain(client_id: &str) -> impl Fn(String) -> ConnectFuture + Send + Sync + 'static {
    let client_id = client_id.to_string();
    move |addr: String| {
        let client_id = client_id.clone();
        Box::pin(async move {
            KafkaConnection::connect(&addr, &client_id, Duration::from_secs(5)).await
        })
    }
}

/// Connections through a local relay that, once `cut` is set, forwards nothing more
/// and keeps the sockets open (a network partition: no error, no answer), and new
/// connections that never complete.
fn through_relay(
    client_id: &str,
    cut: Arc<AtomicBool>,
) -> impl Fn(String) -> ConnectFuture + Send + Sync + 'static {
    let client_id = client_id.to_string();
    move |addr: String| {
        let client_id = client_id.clone();
        let cut = cut.clone();
        Box::pin(async move {
            if cut.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let upstream = TcpStream::connect(&addr).await?;
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let local = listener.local_addr()?.to_string();
            tokio::spawn(async move {
                if let Ok((downstream, _)) = listener.accept().await {
                    let (down_r, down_w) = downstream.into_split();
                    let (up_r, up_w) = upstream.into_split();
                    tokio::join!(
                        pump(down_r, up_w, cut.clone()),
                        pump(up_r, down_w, cut.clone())
                    );
                }
            });
            KafkaConnection::connect(&local, &client_id, Duration::from_secs(5)).await
        })
    }
}

/// Copies until EOF; once the cut is seen, reads and drops everything for good.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut dead = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        dead |= cut.load(Ordering::SeqCst);
        if !dead && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits until `check` holds for the current assignments, looking every 20 ms: the
/// tests time how soon the members get there.
async fn wait_for(
    what: &str,
    rxs: &[&watch::Receiver<Assignment>],
    timeout: Duration,
    check: impl Fn(&[Assignment]) -> bool,
) -> Vec<Assignment> {
    let often = Duration::from_millis(20);
    eventually_every_async(what, timeout, often, async || {
        let now: Vec<Assignment> = rxs.iter().map(|rx| rx.borrow().clone()).collect();
        if check(&now) {
            return Ok(now);
        }
        Err(format!("still {now:#?}"))
    })
    .await
}

/// One generation, every shard held by exactly one member, sizes within one.
fn shared_out(assignments: &[Assignment]) -> bool {
    let generation = assignments[0].generation;
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for a in assignments {
        if a.generation != generation || a.generation < 0 || a.members != assignments.len() {
            return false;
        }
        total += a.shards.len();
        seen.extend(a.shards.iter().copied());
    }
    let sizes: Vec<usize> = assignments.iter().map(|a| a.shards.len()).collect();
    let balanced = sizes
        .iter()
        .max()
        .zip(sizes.iter().min())
        .is_some_and(|(max, min)| max - min <= 1);
    total == SHARDS as usize && seen == (0..SHARDS).collect() && balanced
}

async fn setup(prefix: &str) -> (String, String) {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "mirrorgate::kafka::membership=debug".into()),
        )
        .try_init();
    let group = unique(prefix);
    let topic = unique("_mirrorgate-shards");
    let first = destination()
        .bootstrap
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut conn = KafkaConnection::connect(&first, "fleet-test", Duration::from_secs(10))
        .await
        .expect("connect");
    ensure_shards_topic(&mut conn, &topic, SHARDS, -1)
        .await
        .expect("create shards topic");
    // Again: it exists with the right count.
    ensure_shards_topic(&mut conn, &topic, SHARDS, -1)
        .await
        .expect("shards topic exists");
    match ensure_shards_topic(&mut conn, &topic, SHARDS / 2, -1).await {
        Err(MembershipError::ShardsTopicMismatch { actual, .. }) => assert_eq!(actual, SHARDS),
        other => panic!("another shard count accepted: {other:?}"),
    }
    (group, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_every_shard_and_a_leaving_member_hands_over_at_once() {
    let (group, topic) = setup("fleet-share").await;
    let cancel = CancellationToken::new();
    let ids = ["mg-fleet-a", "mg-fleet-b", "mg-fleet-c"];
    let mut members: Vec<Membership> = ids
        .iter()
        .map(|id| {
            Membership::start(config(&group, &topic, id), plain(id), cancel.clone()).expect("start")
        })
        .collect();
    let rxs: Vec<_> = members.iter().map(Membership::subscribe).collect();
    let started = Instant::now();
    let all: Vec<_> = rxs.iter().collect();
    let first = wait_for(
        "three members share",
        &all,
        Duration::from_secs(60),
        shared_out,
    )
    .await;
    eprintln!("three members stable after {:?}", started.elapsed());
    assert_eq!(first.iter().filter(|a| a.leader).count(), 1, "one leader");
    let member_ids: BTreeSet<_> = first.iter().map(|a| a.member_id.clone()).collect();
    assert_eq!(member_ids.len(), 3);

    // What /admin/fleet would show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (m, a) in members.iter().zip(&first) {
        let view = m.describe();
        assert_eq!(view.state, "stable");
        assert_eq!(view.member_id, a.member_id);
        assert_eq!(view.generation, a.generation);
        assert_eq!(view.shards, a.shards.iter().copied().collect::<Vec<_>>());
        assert!(view.coordinator.is_some());
    }

    // Kafka's own tool lists each member with its client id and shards.
    let group_for_tool = group.clone();
    let text = tokio::task::spawn_blocking(move || describe_group(&group_for_tool))
        .await
        .expect("describe");
    eprintln!("{text}");
    let mut listed = 0;
    for (id, a) in ids.iter().zip(&first) {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().any(|w| w == *id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols.contains(&a.member_id.as_str()), "{line}");
        assert!(cols.contains(&"/127.0.0.1"), "{line}");
        assert!(
            cols.contains(&a.shards.len().to_string().as_str()),
            "{line}"
        );
        let shards: Vec<String> = a.shards.iter().map(i32::to_string).collect();
        // Kafka 4 prints topic:0,3,6 (CURRENT-ASSIGNMENT); earlier releases topic(0,3,6).
        let now = format!("{topic}:{}", shards.join(","));
        let before = format!("{topic}({})", shards.join(","));
        assert!(
            line.contains(&now) || line.contains(&before),
            "{line} lacks {now}"
        );
        listed += 1;
    }
    assert_eq!(listed, 3);

    // b leaves: a and c take its shards at once, keeping their own.
    let leaving = members.remove(1);
    let left_at = Instant::now();
    leaving.shutdown().await;
    let survivors = [&rxs[0], &rxs[2]];
    let after = wait_for(
        "two members share after a leave",
        &survivors,
        Duration::from_secs(30),
        shared_out,
    )
    .await;
    let takeover = left_at.elapsed();
    eprintln!("after LeaveGroup, the others held every shard in {takeover:?}");
    assert!(after[0].generation > first[0].generation);
    assert!(first[0].shards.is_subset(&after[0].shards), "sticky");
    assert!(first[2].shards.is_subset(&after[1].shards), "sticky");
    assert!(
        rxs[1].borrow().shards.is_empty(),
        "the leaver holds nothing"
    );
    assert!(
        takeover < SESSION,
        "takeover {takeover:?} waited for the session timeout"
    );

    // Cancelling the caller's token stops the rest and they leave too.
    cancel.cancel();
    let both = [&rxs[0], &rxs[2]];
    wait_for("everyone left", &both, Duration::from_secs(10), |a| {
        a.iter().all(|a| a.shards.is_empty())
    })
    .await;
    drop(members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_member_fences_itself_before_the_others_take_its_shards() {
    let (group, topic) = setup("fleet-cut").await;
    let cancel = CancellationToken::new();
    let cut = Arc::new(AtomicBool::new(false));
    let a = Membership::start(
        config(&group, &topic, "mg-cut-a"),
        plain("mg-cut-a"),
        cancel.clone(),
    )
    .expect("start");
    let b = Membership::start(
        config(&group, &topic, "mg-cut-b"),
        plain("mg-cut-b"),
        cancel.clone(),
    )
    .expect("start");
    let c = Membership::start(
        config(&group, &topic, "mg-cut-c"),
        through_relay("mg-cut-c", cut.clone()),
        cancel.clone(),
    )
    .expect("start");
    let (ra, rb, mut rc) = (a.subscribe(), b.subscribe(), c.subscribe());
    let first = wait_for(
        "three members share",
        &[&ra, &rb, &rc],
        Duration::from_secs(60),
        shared_out,
    )
    .await;
    let c_shards = first[2].shards.clone();
    assert!(!c_shards.is_empty());

    // Wait for one heartbeat round so the cut falls mid-interval, as it would.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cut_at = Instant::now();
    cut.store(true, Ordering::SeqCst);
    let fenced = tokio::spawn(async move {
        loop {
            if rc.borrow_and_update().shards.is_empty() {
                return Instant::now();
            }
            if rc.changed().await.is_err() {
                return Instant::now();
            }
        }
    });
    let survivors = wait_for(
        "a and b hold everything",
        &[&ra, &rb],
        Duration::from_secs(40),
        shared_out,
    )
    .await;
    let taken_at = Instant::now();
    let fenced_at = fenced.await.expect("watch");
    eprintln!(
        "cut off: fenced itself after {:?}, the others held its shards after {:?}",
        fenced_at - cut_at,
        taken_at - cut_at
    );
    assert!(
        fenced_at < taken_at,
        "the cut-off member still held shards when others took them"
    );
    assert!(
        fenced_at - cut_at <= SESSION,
        "fenced only after {:?}",
        fenced_at - cut_at
    );
    assert!(first[0].shards.is_subset(&survivors[0].shards), "sticky");
    assert!(first[1].shards.is_subset(&survivors[1].shards), "sticky");
    let view = c.describe();
    assert_eq!(view.state, "fenced");
    assert!(view.shards.is_empty());
    // Fenced two thirds of a session after the coordinator last answered.
    assert!(
        view.last_heartbeat_age_ms.is_some_and(|ms| ms >= 4_000),
        "{view:?}"
    );

    // The network heals: c joins again as a new member and the three share again.
    cut.store(false, Ordering::SeqCst);
    let healed_at = Instant::now();
    let rc = c.subscribe();
    let again = wait_for(
        "three members share again",
        &[&ra, &rb, &rc],
        Duration::from_secs(60),
        shared_out,
    )
    .await;
    eprintln!(
        "healed: three members again after {:?}",
        healed_at.elapsed()
    );
    assert_ne!(again[2].member_id, first[2].member_id, "a new member id");
    drop((a, b, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_members_share_and_leave_by_instance_id() {
    let (group, topic) = setup("fleet-static").await;
    let cancel = CancellationToken::new();
    let start = |id: &str| {
        let mut c = config(&group, &topic, id);
        c.instance_id = Some(format!("{id}-instance"));
        Membership::start(c, plain(id), cancel.clone()).expect("start")
    };
    let (a, b) = (start("mg-static-a"), start("mg-static-b"));
    let (ra, rb) = (a.subscribe(), b.subscribe());
    let first = wait_for(
        "two static members share",
        &[&ra, &rb],
        Duration::from_secs(60),
        shared_out,
    )
    .await;
    assert!(first.iter().all(|a| a.shards.len() == 32));
    let left_at = Instant::now();
    b.shutdown().await;
    let after = wait_for(
        "a holds everything alone",
        &[&ra],
        Duration::from_secs(30),
        shared_out,
    )
    .await;
    eprintln!(
        "static member left; the other held every shard in {:?}",
        left_at.elapsed()
    );
    assert!(first[0].shards.is_subset(&after[0].shards));
    assert!(
        left_at.elapsed() < SESSION,
        "LeaveGroup by instance id did not take"
    );
    drop(a);
}
