"""The workload: writers and group consumers on the source for the whole run, and
clients of the mirrors through the proxies. All clients are librdkafka
(confluent-kafka), nobody's code here but the driving loops.
"""

import random
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

FILLER_KEY = b"__mirrorgate_filler"

# name -> (partitions, replication factor, topic configs)
TOPICS = {
    "chaos-idem": (3, 3, {}),
    "chaos-moves": (2, 2, {"min.insync.replicas": "1"}),
    "chaos-grow": (1, 3, {}),
    "chaos-txn": (2, 3, {}),
    "chaos-compact": (
        2,
        3,
        {
            "cleanup.policy": "compact",
            "segment.ms": "10000",
            "min.cleanable.dirty.ratio": "0.01",
            "max.compaction.lag.ms": "20000",
        },
    ),
    "chaos-late": (2, 3, {}),
}
MIRRORED_AT_START = ["chaos-idem", "chaos-moves", "chaos-grow", "chaos-txn", "chaos-compact"]
LATE_MIRROR = "chaos-late"
COMPACTED = {"chaos-compact"}
GROW_TO = 3

# Groups on the source: the link's filter includes the prefix "chaos-sync-".
SYNCED_GROUPS = {
    "chaos-sync-a": ["chaos-idem", "chaos-txn"],
    "chaos-sync-b": ["chaos-moves", "chaos-grow"],
}
LOCAL_GROUPS = {"chaos-local-a": ["chaos-idem"]}
READER_GROUP = "chaos-reader"
READ_THROUGH_PROXY = ["chaos-idem", "chaos-txn", "chaos-compact"]
WRITE_TO_MIRROR = "chaos-idem"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = {}

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def error(self, key, what):
        with self.lock:
            bucket = self.errors.setdefault(key, {})
            bucket[what] = bucket.get(what, 0) + 1


class Workload:
    def __init__(self, seed, src_bootstrap, proxy_bootstraps, stats, log):
        self.rng = random.Random("workload-%s" % seed)
        self.src = src_bootstrap
        self.proxies = proxy_bootstraps
        self.stats = stats
        self.log = log
        self.stop = threading.Event()
        self.threads = []
        self.grown = threading.Event()
        self.accepted_mirror_writes = []  # (partition, offset) a proxy accepted: violations

    def start(self):
        seeds = [self.rng.random() for _ in range(8)]
        for target, name, s in [
            (self._idempotent, "idempotent", seeds[0]),
            (self._transactional, "transactional", seeds[1]),
            (self._compacted, "compacted", seeds[2]),
            (self._groups, "groups", seeds[3]),
            (self._proxy_reader, "proxy-reader", seeds[4]),
            (self._mirror_writer, "mirror-writer", seeds[5]),
        ]:
            t = threading.Thread(target=target, args=(random.Random(s),), name=name, daemon=True)
            t.start()
            self.threads.append(t)

    def finish(self, timeout=120):
        self.stop.set()
        for t in self.threads:
            t.join(timeout)

    # --- source writers ---

    def _producer(self, extra=None):
        conf = {
            "bootstrap.servers": self.src,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "topic.metadata.refresh.interval.ms": 3000,
            "message.timeout.ms": 300000,
        }
        conf.update(extra or {})
        return Producer(conf)

    def _delivered(self, topic):
        def cb(err, msg):
            if err is None:
                self.stats.add(("acked", topic))
            else:
                self.stats.error(("produce", topic), err.name())

        return cb

    def _value(self, rng, topic, seq):
        return ("%s:%d:%s" % (topic, seq, "%016x" % rng.getrandbits(64) * rng.randint(1, 20))).encode()

    def _idempotent(self, rng):
        p = self._producer()
        topics = ["chaos-idem", "chaos-moves", "chaos-grow", "chaos-late"]
        seq = 0
        while not self.stop.is_set():
            for topic in topics:
                seq += 1
                headers = [("seq", str(seq).encode()), ("src", b"chaos")]
                if rng.random() < 0.2:
                    headers.append(("empty", b""))
                p.produce(
                    topic,
                    key=b"k%d" % rng.randint(0, 999),
                    value=self._value(rng, topic, seq),
                    headers=headers,
                    on_delivery=self._delivered(topic),
                )
            p.poll(0)
            time.sleep(0.02)
        p.flush(120)

    def _transactional(self, rng):
        topic = "chaos-txn"
        p = self._txn_producer()
        seq = 0
        while not self.stop.is_set():
            try:
                p.begin_transaction()
                n = rng.randint(1, 10)
                for _ in range(n):
                    seq += 1
                    p.produce(topic, key=b"t%d" % rng.randint(0, 99), value=self._value(rng, topic, seq))
                if rng.random() < 0.25:
                    p.abort_transaction(60)
                    self.stats.add(("txn", "aborted"))
                else:
                    p.commit_transaction(60)
                    self.stats.add(("txn", "committed"))
            except KafkaException as e:
                err = e.args[0]
                self.stats.error(("txn", topic), err.name())
                if err.txn_requires_abort():
                    try:
                        p.abort_transaction(60)
                    except KafkaException:
                        p = self._txn_producer()
                elif not err.retriable():
                    p = self._txn_producer()
            time.sleep(rng.uniform(0.05, 0.3))

    def _txn_producer(self):
        while True:
            p = self._producer(
                {"transactional.id": "chaos-txn-writer", "transaction.timeout.ms": 60000, "message.timeout.ms": 60000}
            )
            try:
                p.init_transactions(60)
                return p
            except KafkaException as e:
                self.stats.error(("txn", "init"), e.args[0].name())
                time.sleep(1)

    def _compacted(self, rng):
        topic = "chaos-compact"
        p = self._producer()
        seq = 0
        while not self.stop.is_set():
            seq += 1
            key = b"c%d" % rng.randint(0, 39)
            value = None if rng.random() < 0.05 else self._value(rng, topic, seq)
            p.produce(topic, key=key, value=value, on_delivery=self._delivered(topic))
            p.poll(0)
            time.sleep(0.03)
        p.flush(120)

    # --- source groups ---

    def _groups(self, rng):
        consumers = {}
        for group, topics in {**SYNCED_GROUPS, **LOCAL_GROUPS}.items():
            c = Consumer(
                {
                    "bootstrap.servers": self.src,
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "topic.metadata.refresh.interval.ms": 3000,
                }
            )
            c.subscribe(topics)
            consumers[group] = c
        last_commit = time.monotonic()
        while not self.stop.is_set():
            for group, c in consumers.items():
                for msg in c.consume(200, 0.05):
                    if msg.error() is None:
                        self.stats.add(("consumed", group))
            if time.monotonic() - last_commit > rng.uniform(0.5, 2.0):
                for group, c in consumers.items():
                    self._commit(c, group)
                last_commit = time.monotonic()
        # Drain to the end, commit, and leave, so the final offsets are known.
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 5:
            got = 0
            for group, c in consumers.items():
                for msg in c.consume(500, 0.2):
                    if msg.error() is None:
                        got += 1
            if got:
                idle_since = time.monotonic()
        for group, c in consumers.items():
            self._commit(c, group)
            c.close()

    def _commit(self, c, group):
        try:
            c.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                self.stats.error(("commit", group), e.args[0].name())

    # --- clients of the mirrors, through the proxies ---

    def _proxy_reader(self, rng):
        c = Consumer(
            {
                "bootstrap.servers": ",".join(self.proxies),
                "group.id": READER_GROUP,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "topic.metadata.refresh.interval.ms": 3000,
            }
        )
        c.subscribe(READ_THROUGH_PROXY)
        while not self.stop.is_set():
            for msg in c.consume(200, 0.2):
                if msg.error() is not None:
                    self.stats.error(("proxy-read", "all"), msg.error().name())
                elif msg.key() == FILLER_KEY:
                    self.stats.add(("proxy-read", "filler-visible"))
                else:
                    self.stats.add(("proxy-read", "records"))
        c.close()

    def _mirror_writer(self, rng):
        p = Producer(
            {
                "bootstrap.servers": ",".join(self.proxies),
                "acks": "all",
                "enable.idempotence": False,
                "message.timeout.ms": 20000,
                "topic.metadata.refresh.interval.ms": 3000,
            }
        )

        def cb(err, msg):
            if err is None:
                self.accepted_mirror_writes.append((msg.partition(), msg.offset(), time.time()))
                self.stats.add(("mirror-write", "ACCEPTED"))
            elif err.code() == KafkaError.INVALID_REQUEST:
                # librdkafka reports the partition's error code, not the proxy's message
                # (the message itself is asserted by the integration tests).
                self.stats.add(("mirror-write", "refused INVALID_REQUEST"))
            else:
                self.stats.add(("mirror-write", "failed %s" % err.name()))

        while not self.stop.is_set():
            try:
                p.produce(WRITE_TO_MIRROR, value=b"must be refused", on_delivery=cb)
            except BufferError:
                pass
            p.poll(0)
            time.sleep(rng.uniform(0.2, 0.6))
        p.flush(30)


def latest_offsets(bootstrap, topic_partitions, timeout=30):
    """{(topic, partition): (low, high)} read committed from a cluster or proxy."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-offsets", "isolation.level": "read_committed"})
    out = {}
    try:
        for t, p in topic_partitions:
            out[(t, p)] = c.get_watermark_offsets(TopicPartition(t, p), timeout=timeout, cached=False)
    finally:
        c.close()
    return out
