"""Faults and operations, planned from the seed before the run starts.

Each *lane* runs one fault at a time, so the run never injects more than the topology
tolerates: one mirrorgate instance down or paused (two keep copying), one broker down
per cluster (replication factor 3, min.insync.replicas 2), one network fault, one
admin move (elections, reassignments, leader moves). A lane's faults follow each other
with random gaps; the plan (kind, target, start, duration) depends only on the seed, so
a seed replays the same faults in the same order.
"""

import json
import os
import random
import tempfile
import threading
import time

from confluent_kafka import ElectionType, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from . import topology
from .workload import TOPICS

LANES = {
    "instance": [("instance_kill", 3, 15), ("instance_pause", 2, 12)],
    "src-broker": [("src_broker_restart", 5, 20), ("src_broker_kill", 5, 20)],
    "dst-broker": [("dst_broker_restart", 5, 20), ("dst_broker_kill", 5, 20)],
    "network": [("net_drop", 0, 0), ("net_blackhole", 2, 12)],
    "admin": [
        ("src_preferred_election", 0, 0),
        ("dst_preferred_election", 0, 0),
        ("src_reassignment", 0, 0),
        ("dst_reassignment", 0, 0),
        ("metadata_leader_move", 0, 0),
        ("coordinator_move", 0, 0),
    ],
}
GAP = (3, 12)


def plan(seed, seconds):
    """[(start, lane, kind, target, duration)] sorted by start."""
    out = []
    for lane, kinds in LANES.items():
        rng = random.Random("faults-%s-%s" % (seed, lane))
        t = rng.uniform(*GAP)
        while True:
            kind, lo, hi = rng.choice(kinds)
            duration = round(rng.uniform(lo, hi), 1) if hi else 0.0
            if t + duration > seconds:
                break
            target = {
                "instance": rng.randrange(topology.INSTANCES),
                "src-broker": rng.randrange(topology.NODES),
                "dst-broker": rng.randrange(topology.NODES),
                "network": (rng.randrange(topology.INSTANCES), rng.choice(["source", "destination"])),
                "admin": rng.randrange(1 << 30),
            }[lane]
            out.append((round(t, 1), lane, kind, target, duration))
            t += duration + rng.uniform(*GAP)
    out.sort(key=lambda f: (f[0], f[1]))
    return out


class Timeline:
    def __init__(self, t0):
        self.t0 = t0
        self.lock = threading.Lock()
        self.events = []  # (wall start, wall end, kind, target, note)

    def add(self, start, end, kind, target, note=""):
        with self.lock:
            self.events.append((start, end, kind, target, note))

    def around(self, wall, window=30):
        with self.lock:
            return [e for e in self.events if e[0] - window <= wall <= e[1] + window]

    def fmt(self, e):
        start, end, kind, target, note = e
        return "  t=%6.1fs..%6.1fs %-24s %-22s %s" % (
            start - self.t0,
            end - self.t0,
            kind,
            target,
            note,
        )


class Injector:
    def __init__(self, seed, seconds, src, dst, instances, relay, timeline, log):
        self.plan = plan(seed, seconds)
        self.src = src
        self.dst = dst
        self.instances = instances
        self.relay = relay
        self.timeline = timeline
        self.log = log
        self.counts = {}
        self.failed = {}
        # Brokers down right now, by side: placement faults leave them out (Kafka
        # refuses to assign replicas to a broker it does not know).
        self.down = {"source": set(), "destination": set()}
        self.stop = threading.Event()
        self.admins = {
            "source": AdminClient({"bootstrap.servers": src.bootstrap}),
            "destination": AdminClient({"bootstrap.servers": dst.bootstrap}),
        }

    def run(self, t0):
        lanes = {}
        for fault in self.plan:
            lanes.setdefault(fault[1], []).append(fault)
        threads = [
            threading.Thread(target=self._lane, args=(t0, faults), name="lane-" + lane, daemon=True)
            for lane, faults in lanes.items()
        ]
        for t in threads:
            t.start()
        return threads

    def _lane(self, t0, faults):
        for start, lane, kind, target, duration in faults:
            delay = t0 + start - time.time()
            if delay > 0 and self.stop.wait(delay):
                return
            if self.stop.is_set():
                return
            began = time.time()
            note = ""
            try:
                note = getattr(self, kind)(target, duration) or ""
                tally = self.failed if note.startswith("skipped") else self.counts
                tally[kind] = tally.get(kind, 0) + 1
            except Exception as e:  # noqa: BLE001 - a fault that could not be injected is reported
                self.failed[kind] = self.failed.get(kind, 0) + 1
                note = "not injected: %s" % e
            self.timeline.add(began, time.time(), kind, target, note)
            self.log("fault %-24s %-22s %.1fs %s" % (kind, target, time.time() - began, note))

    def _hold(self, seconds):
        # A fault's duration ends early only when the run is being torn down.
        self.stop.wait(seconds)

    # --- mirrorgate instances ---

    def instance_kill(self, k, duration):
        inst = self.instances[k]
        inst.kill()
        self._hold(duration)
        inst.start()
        return "restarted" if inst.wait_ready(60) else "restarted, not ready after 60 s"

    def instance_pause(self, k, duration):
        inst = self.instances[k]
        inst.pause()
        self._hold(duration)
        inst.resume()

    # --- brokers ---

    def _restart(self, cluster, node, duration, kill):
        side = "source" if cluster is self.src else "destination"
        self.down[side].add(node)
        try:
            (cluster.kill_node if kill else cluster.stop_node)(node)
            self._hold(duration)
            cluster.start_node(node)
        finally:
            self.down[side].discard(node)

    def src_broker_restart(self, node, duration):
        self._restart(self.src, node, duration, False)

    def src_broker_kill(self, node, duration):
        self._restart(self.src, node, duration, True)

    def dst_broker_restart(self, node, duration):
        self._restart(self.dst, node, duration, False)

    def dst_broker_kill(self, node, duration):
        self._restart(self.dst, node, duration, True)

    # --- network between an instance and a cluster ---

    def net_drop(self, target, duration):
        k, side = target
        self.relay.drop(self.instances[k].name, self._cluster(side).name)

    def net_blackhole(self, target, duration):
        k, side = target
        self.relay.blackhole(self.instances[k].name, self._cluster(side).name, duration)
        self._hold(duration)

    def _cluster(self, side):
        return self.src if side == "source" else self.dst

    # --- leadership and placement ---

    def src_preferred_election(self, r, _):
        return self._elect("source", None)

    def dst_preferred_election(self, r, _):
        return self._elect("destination", None)

    def _elect(self, side, partitions):
        f = self.admins[side].elect_leaders(ElectionType.PREFERRED, partitions)
        try:
            f.result(30)
        except Exception as e:  # noqa: BLE001 - ELECTION_NOT_NEEDED is common
            return "election: %s" % str(e)[:80]
        return "preferred leaders elected"

    def src_reassignment(self, r, _):
        return self._reassign(self.src, "source", "chaos-moves", r)

    def dst_reassignment(self, r, _):
        return self._reassign(self.dst, "destination", "chaos-moves", r)

    def metadata_leader_move(self, r, _):
        return self._move_leader(self.dst, "destination", topology.METADATA_TOPIC, 0, r)

    def coordinator_move(self, r, _):
        p = topology.coordinator_partition(topology.FLEET_GROUP)
        return self._move_leader(self.dst, "destination", "__consumer_offsets", p, r)

    def _replicas(self, side, topic):

        fs = self.admins[side].describe_topics(TopicCollection([topic]))
        desc = fs[topic].result(30)
        return {p.id: ([n.id for n in p.replicas], p.leader.id if p.leader else -1) for p in desc.partitions}

    def _execute(self, cluster, moves):
        body = {"version": 1, "partitions": moves}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(body, f)
            path = f.name
        try:
            out = topology.tool(
                "kafka-reassign-partitions",
                "--bootstrap-server",
                cluster.bootstrap,
                "--reassignment-json-file",
                path,
                "--execute",
            )
        finally:
            os.unlink(path)
        if out.returncode != 0:
            lines = (out.stderr + out.stdout).strip().splitlines()
            why = next((l for l in lines if "Error" in l or "Exception" in l), lines[-1] if lines else "")
            raise RuntimeError(why.strip()[:200])

    def _reassign(self, cluster, side, topic, r):
        """Moves one replica of a partition to the broker that does not hold it."""
        rng = random.Random(r)
        replicas = self._replicas(side, topic)
        partition = rng.choice(sorted(replicas))
        current, _ = replicas[partition]
        if self.down[side] & set(current):
            return "skipped: a replica's broker is down"
        spare = [n for n in range(topology.NODES) if n not in current and n not in self.down[side]]
        new = list(current)
        if not spare:
            new.pop(rng.randrange(len(new)))  # one replica fewer (the next move adds one)
        elif len(current) < 2 or rng.random() < 0.5:
            new.append(spare[0])
        else:
            new[rng.randrange(len(new))] = spare[0]
        self._execute(cluster, [{"topic": topic, "partition": partition, "replicas": new}])
        return "%s-%d %s -> %s" % (topic, partition, current, new)

    def _move_leader(self, cluster, side, topic, partition, r):
        """Reorders the replicas so another one is preferred, then elects it."""
        rng = random.Random(r)
        replicas, leader = self._replicas(side, topic)[partition]
        if self.down[side] & set(replicas):
            return "skipped: a replica's broker is down"
        others = [n for n in replicas if n != leader]
        if not others:
            return "single replica"
        first = rng.choice(others)
        new = [first] + [n for n in replicas if n != first]
        self._execute(cluster, [{"topic": topic, "partition": partition, "replicas": new}])
        time.sleep(1)
        note = self._elect(side, [TopicPartition(topic, partition)])
        return "%s-%d leader %d -> %d (%s)" % (topic, partition, leader, first, note)


def heal(src, dst, instances, relay):
    """Ends every fault: all brokers and instances up, network clean."""
    relay.heal()
    for cluster in (src, dst):
        for i in range(topology.NODES):
            cluster.start_node(i)
    for inst in instances:
        if inst.stopped:
            inst.resume()
        if inst.pid is None:
            inst.start()
    return all(inst.wait_ready(90) for inst in instances)


def topic_partitions(topics):
    return [(t, p) for t in topics for p in range(TOPICS[t][0])]
