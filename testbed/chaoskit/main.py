"""testbed/chaos: a workload against a mirrorgate fleet under seeded random faults, then
every invariant checked. See testbed/chaos --help."""

import argparse
import json
import os
import random
import sys
import threading
import time

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

from . import faults, topology
from .checker import Checker, mirror_line, read_partition, watermarks
from .relay import Relay
from .workload import (
    GROW_TO,
    LATE_MIRROR,
    MIRRORED_AT_START,
    TOPICS,
    Stats,
    Workload,
)

CONFIG_KEYS = ["retention.ms", "cleanup.policy", "segment.ms"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="testbed/chaos", description=__doc__)
    ap.add_argument("--minutes", type=float, default=3.0, help="how long faults are injected (default 3)")
    ap.add_argument("--seed", type=int, default=None, help="replays a run (default: a random seed, printed)")
    ap.add_argument("--out", default=os.path.join(topology.ROOT, "target", "chaos"), help="logs and report.json")
    ap.add_argument("--binary", default=os.path.join(topology.ROOT, "target", "debug", "mirrorgate"))
    ap.add_argument("--keep", action="store_true", help="leave clusters and instances running afterwards")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    os.makedirs(args.out, exist_ok=True)
    run = Run(seed, args.minutes * 60, args.out, args.binary)
    try:
        ok = run.go()
    finally:
        if not args.keep:
            run.teardown()
    return 0 if ok else 1


class Run:
    def __init__(self, seed, seconds, out, binary):
        self.seed = seed
        self.seconds = seconds
        self.out = out
        self.binary = binary
        self.started = time.time()
        self.logf = open(os.path.join(out, "chaos.log"), "w")
        self.loglock = threading.Lock()
        self.src = topology.Cluster("chaos-src", topology.SRC_PORT)
        self.dst = topology.Cluster("chaos-dst", topology.DST_PORT)
        self.instances = []
        self.relay = None
        self.stats = Stats()
        self.timeline = faults.Timeline(time.time())
        self.ops_rng = random.Random("operations-%s" % seed)
        self.mirrors = list(MIRRORED_AT_START)
        self.partitions = {t: TOPICS[t][0] for t in TOPICS}
        self.moved_log_starts = set()
        self.op_counts = {}

    def log(self, msg):
        line = "[%7.1fs] %s" % (time.time() - self.started, msg)
        with self.loglock:
            print(line, flush=True)
            self.logf.write(line + "\n")
            self.logf.flush()

    # --- setup ---

    def setup(self):
        self.log("seed %d, %.1f minutes of faults, output in %s" % (self.seed, self.seconds / 60, self.out))
        for c in (self.src, self.dst):
            c.down()
        errors = []

        def up(c):
            try:
                c.up()
            except Exception as e:  # noqa: BLE001 - re-raised below
                errors.append("%s: %s %s" % (c.name, e, getattr(e, "stderr", "")[-2000:]))

        in_parallel(up, (self.src, self.dst))
        if errors:
            raise RuntimeError("; ".join(errors))
        self.log("clusters up: source %s, destination %s" % (self.src.bootstrap, self.dst.bootstrap))
        admin = AdminClient({"bootstrap.servers": self.src.bootstrap})
        new = [NewTopic(t, p, rf, config=cfg) for t, (p, rf, cfg) in TOPICS.items()]
        for t, f in admin.create_topics(new).items():
            f.result(60)
        routes = {**self.src.relay_routes(), **self.dst.relay_routes()}
        self.relay = Relay(routes, lambda: {i.name: i.pid for i in self.instances if i.pid})
        self.relay.start()
        self.instances = [
            topology.Instance(k, self.binary, self.out, self.dst.relay_bootstrap) for k in range(topology.INSTANCES)
        ]
        for inst in self.instances:
            inst.start()
        for inst in self.instances:
            if not inst.wait_ready(90):
                raise RuntimeError("%s not ready" % inst.name)
        filters = os.path.join(self.out, "group-filters.json")
        with open(filters, "w") as f:
            json.dump({"groupFilters": [{"name": "chaos-sync-", "patternType": "PREFIXED", "filterType": "INCLUDE"}]}, f)
        link_config = os.path.join(self.out, "link.properties")
        with open(link_config, "w") as f:
            f.write("bootstrap.servers=%s\n" % self.src.relay_bootstrap)
            f.write("consumer.offset.sync.enable=true\nconsumer.offset.sync.ms=2000\ntopic.config.sync.ms=2000\n")
        self.admin_cli(
            "cluster-links",
            "--create",
            "--link",
            topology.LINK,
            "--config-file",
            link_config,
            "--consumer-group-filters-json-file",
            filters,
        )
        for topic in MIRRORED_AT_START:
            self.admin_cli("mirrors", "--create", "--mirror-topic", topic, "--link", topology.LINK)
        self.log("link %s and %d mirrors created; %d instances ready" % (topology.LINK, len(self.mirrors), len(self.instances)))

    def admin_cli(self, *args, attempts=30, done=None):
        """A CLI command against any live instance (the REST API works on each).
        `done`: an error text that means an earlier try already did it."""
        last = ""
        for _ in range(attempts):
            live = [i for i in self.instances if i.pid and not i.stopped]
            if live:
                inst = self.ops_rng.choice(live)
                try:
                    out = inst.cli(*args, timeout=30)
                    if out.returncode == 0:
                        return out.stdout
                    last = "%s: %s" % (inst.name, (out.stderr or out.stdout).strip()[-300:])
                    if "already" in last or (done and done in last):
                        return out.stdout
                except Exception as e:  # noqa: BLE001 - the instance may have been paused mid-call
                    last = "%s: %s" % (inst.name, e)
            time.sleep(2)
        raise RuntimeError("mirrorgate %s failed: %s" % (" ".join(args[:2]), last))

    # --- operations on the workload, planned from the seed ---

    def operations(self, t0, stop):
        rng = self.ops_rng
        s = self.seconds
        plan = [
            (s * rng.uniform(0.05, 0.25), "create_late_mirror"),
            (s * rng.uniform(0.2, 0.4), "add_partitions"),
            (s * rng.uniform(0.3, 0.6), "alter_source_config"),
            (s * rng.uniform(0.3, 0.7), "delete_source_records"),
        ]
        t = s * rng.uniform(0.1, 0.3)
        while t < s * 0.85:
            plan.append((t, "pause_resume"))
            t += rng.uniform(20, 60)
        plan.sort()
        for at, op in plan:
            delay = t0 + at - time.time()
            if delay > 0 and stop.wait(delay):
                return
            began = time.time()
            # A broker or instance may be down right now: an operation is retried a
            # few times (each is idempotent) before it counts as failed.
            for attempt in range(5):
                try:
                    note = getattr(self, op)(rng) or ""
                    self.op_counts[op] = self.op_counts.get(op, 0) + 1
                    break
                except Exception as e:  # noqa: BLE001 - reported, the run goes on
                    note = "failed: %s" % e
                    self.log("op %s attempt %d %s" % (op, attempt + 1, note))
                    if attempt == 4:
                        self.op_counts[op + " (failed)"] = self.op_counts.get(op + " (failed)", 0) + 1
                    elif stop.wait(5):
                        return
            self.timeline.add(began, time.time(), op, "", note)
            self.log("op %-24s %s" % (op, note))

    def create_late_mirror(self, rng):
        if LATE_MIRROR in self.mirrors:
            return LATE_MIRROR
        self.admin_cli("mirrors", "--create", "--mirror-topic", LATE_MIRROR, "--link", topology.LINK)
        self.mirrors.append(LATE_MIRROR)
        return LATE_MIRROR

    def add_partitions(self, rng):
        admin = AdminClient({"bootstrap.servers": self.src.bootstrap})
        for f in admin.create_partitions([NewPartitions("chaos-grow", GROW_TO)]).values():
            try:
                f.result(60)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.INVALID_PARTITIONS:  # a retry after success
                    raise
        self.partitions["chaos-grow"] = GROW_TO
        return "chaos-grow -> %d partitions" % GROW_TO

    def alter_source_config(self, rng):
        admin = AdminClient({"bootstrap.servers": self.src.bootstrap})
        value = str(rng.randint(6, 9) * 86400000)
        res = ConfigResource(
            ConfigResource.Type.TOPIC,
            "chaos-idem",
            incremental_configs=[ConfigEntry("retention.ms", value, incremental_operation=AlterConfigOpType.SET)],
        )
        for f in admin.incremental_alter_configs([res]).values():
            f.result(60)
        return "chaos-idem retention.ms=%s" % value

    def delete_source_records(self, rng):
        admin = AdminClient({"bootstrap.servers": self.src.bootstrap})
        tp = ("chaos-idem", rng.randrange(TOPICS["chaos-idem"][0]))
        low, high = watermarks(self.src.bootstrap, [tp])[tp]
        if low < 0:
            # -1 would mean "up to the high watermark" to DeleteRecords.
            raise RuntimeError("no watermarks for %s-%d" % tp)
        before = low + (high - low) // 2
        for f in admin.delete_records([TopicPartition(tp[0], tp[1], before)]).values():
            f.result(60)
        self.moved_log_starts.add(tp)
        return "%s-%d log start %d -> %d" % (tp[0], tp[1], low, before)

    def pause_resume(self, rng):
        topic = rng.choice([m for m in self.mirrors if m != "chaos-compact"])
        # A step whose answer was lost (an instance paused or killed mid-call) is
        # retried; finding the mirror already in the wanted state is then success.
        self.admin_cli("mirrors", "--pause", "--topics", topic, done="is PAUSED")
        time.sleep(rng.uniform(5, 15))
        self.resume_everywhere(topic)
        return topic

    def resume_everywhere(self, topic, timeout=240):
        """Resumes `topic` until every live instance shows it ACTIVE: an instance
        that had not seen the pause yet answers "is ACTIVE" to a resume, so the
        answer alone does not prove the mirror runs again."""
        deadline = time.monotonic() + timeout
        while True:
            self.admin_cli("mirrors", "--resume", "--topics", topic, done="is ACTIVE")
            settle = time.monotonic() + 10
            while time.monotonic() < settle:
                states = self.mirror_states(topic)
                if states and all(s == "ACTIVE" for s in states.values()):
                    return
                time.sleep(1)
            if time.monotonic() > deadline:
                raise RuntimeError("%s not ACTIVE on every instance: %s" % (topic, states))
            self.log("resume of %s not seen everywhere yet (%s); again" % (topic, states))

    def mirror_states(self, topic):
        """The mirror's state as each live instance describes it."""
        states = {}
        for inst in [i for i in self.instances if i.pid and not i.stopped]:
            try:
                out = inst.cli("mirrors", "--describe", "--topics", topic, timeout=15)
            except Exception:  # noqa: BLE001 - paused or killed right now
                continue
            line, state = mirror_line(out.stdout, topic)
            if line is not None:
                states[inst.name] = state
        return states

    # --- the run ---

    def go(self):
        self.setup()
        proxies = [i.bootstrap for i in self.instances]
        workload = Workload(self.seed, self.src.bootstrap, proxies, self.stats, self.log)
        injector = faults.Injector(
            self.seed, self.seconds, self.src, self.dst, self.instances, self.relay, self.timeline, self.log
        )
        self.log("%d faults planned" % len(injector.plan))
        with open(os.path.join(self.out, "plan.json"), "w") as f:
            json.dump(injector.plan, f, indent=0)
        workload.start()
        t0 = time.time()
        self.timeline.t0 = t0
        stop_ops = threading.Event()
        ops = threading.Thread(target=self.operations, args=(t0, stop_ops), daemon=True)
        ops.start()
        lanes = injector.run(t0)
        time.sleep(max(0.0, t0 + self.seconds - time.time()))
        injector.stop.set()
        for t in lanes:
            t.join(180)
        ops.join(120)
        stop_ops.set()
        # An operation still running (a resume being retried) must end before the
        # checks, or it could pause a mirror under them.
        ops.join(600)
        if ops.is_alive():
            raise RuntimeError("an operation on the workload did not end in 10 minutes")
        self.log("faults over; healing")
        healed = faults.heal(self.src, self.dst, self.instances, self.relay)
        self.log("all instances ready: %s; stopping the workload" % healed)
        workload.finish()
        return self.check(workload, injector)

    def check(self, workload, injector):
        checker = Checker(self.src, self.dst, self.instances, self.log)
        tps = lambda: [(t, p) for t in self.mirrors for p in range(self.partitions[t])]  # noqa: E731
        checker.wait_caught_up(tps(), 300)
        self.log("mirrors caught up; counting a final window")
        before = [i.metrics() or {} for i in self.instances]
        window = self.final_window(tps())
        checker.wait_caught_up(tps(), 120)
        time.sleep(1)
        after = [i.metrics() or {} for i in self.instances]
        copied, fillers = checker.counters(before, after, window)
        ends = checker.wait_caught_up(tps(), 60)
        self.log("comparing %d partitions record for record through %s" % (len(tps()), self.instances[0].bootstrap))
        checker.records(tps(), ends, self.instances[0].bootstrap)
        checker.log_starts(tps(), self.instances[1].bootstrap, self.moved_log_starts)
        checker.mirror_states(self.mirrors)
        checker.group_offsets(self.partitions, 60)
        checker.configs(["chaos-idem", "chaos-compact"], CONFIG_KEYS, 30)
        for partition, offset, wall in workload.accepted_mirror_writes:
            checker.fail("read-only", "chaos-idem-%d" % partition, "a write through the proxy was accepted at offset %d" % offset, wall)
        totals = [i.metrics() or {} for i in self.instances]
        return self.report(checker, injector, (copied, fillers), totals)

    def final_window(self, tps):
        """Writes a known window (data, a committed and an aborted transaction) and
        returns (records, offsets) the source got in it."""
        start = watermarks(self.src.bootstrap, tps)
        p = Producer({"bootstrap.servers": self.src.bootstrap, "enable.idempotence": True, "acks": "all"})
        for i in range(300):
            p.produce("chaos-idem", key=b"w%d" % i, value=b"window-%d" % i)
        p.flush(60)
        t = Producer({"bootstrap.servers": self.src.bootstrap, "transactional.id": "chaos-window"})
        t.init_transactions(60)
        for commit in (True, False):
            t.begin_transaction()
            for i in range(20):
                t.produce("chaos-txn", key=b"x%d" % i, value=b"window-txn-%d" % i)
            t.flush(60)  # aborted records too are written before the abort
            (t.commit_transaction if commit else t.abort_transaction)(60)
        # Transaction markers are written after EndTxn returns: wait until the ends settle.
        end = watermarks(self.src.bootstrap, tps)
        for _ in range(30):
            time.sleep(2)
            again = watermarks(self.src.bootstrap, tps)
            if again == end:
                break
            end = again
        offsets = sum(end[tp][1] - start[tp][1] for tp in tps)
        records = 0
        for tp in tps:
            if end[tp][1] > start[tp][1]:
                recs = read_partition(self.src.bootstrap, tp[0], tp[1], end[tp][1], start[tp][1])
                records += len(recs)
        return records, offsets

    def report(self, checker, injector, window, totals):
        v = checker.violations
        by_kind = dict(sorted(injector.counts.items()))
        summary = {
            "seed": self.seed,
            "minutes": self.seconds / 60,
            "faults": by_kind,
            "faults_not_injected": injector.failed,
            "operations": self.op_counts,
            "records_checked": checker.records_checked,
            "partitions_checked": checker.partitions_checked,
            "window": {"records": window[0], "fillers": window[1]},
            "workload": {"%s %s" % k: n for k, n in sorted(self.stats.counts.items())},
            "client_errors": {"%s %s" % k: e for k, e in sorted(self.stats.errors.items())},
            "relay": self.relay.stats,
            "mirrorgate": {
                "conditional_append_refusals": sum(topology.metric_sum(m, "mirrorgate_conditional_append_refusals_total") for m in totals),
                "self_fenced": sum(topology.metric_sum(m, "mirrorgate_fleet_self_fenced_total") for m in totals),
                "produce_retries": sum(topology.metric_sum(m, "mirrorgate_produce_retries_total") for m in totals),
            },
            "violations": [str(x) for x in v],
        }
        with open(os.path.join(self.out, "report.json"), "w") as f:
            json.dump(summary, f, indent=2)
        with open(os.path.join(self.out, "timeline.txt"), "w") as f:
            for e in sorted(self.timeline.events):
                f.write(self.timeline.fmt(e) + "\n")
        print()
        print("chaos report (seed %d, %.1f minutes of faults)" % (self.seed, self.seconds / 60))
        print("  faults injected: %d  %s" % (sum(by_kind.values()), ", ".join("%s %d" % kv for kv in by_kind.items())))
        if injector.failed:
            print("  faults not injected (a broker down, or an admin call timed out): %s" % injector.failed)
        print("  operations: %s" % ", ".join("%s %d" % kv for kv in sorted(self.op_counts.items())))
        print("  records checked: %d in %d mirror partitions" % (checker.records_checked, checker.partitions_checked))
        print("  writes to a mirror through the proxies: %s" % {k[1]: n for k, n in self.stats.counts.items() if k[0] == "mirror-write"})
        print("  counters over the final window: %d records, %d fillers" % window)
        print("  violations: %d" % len(v))
        for x in v:
            print("    %s" % x)
            if x.wall:
                for e in self.timeline.around(x.wall):
                    print("    " + self.timeline.fmt(e))
        print("  replay: testbed/chaos --minutes %g --seed %d" % (self.seconds / 60, self.seed))
        return not v

    def teardown(self):
        # In parallel: each instance drains, and each cluster shuts down gracefully.
        in_parallel(lambda inst: inst.terminate(), self.instances)
        if self.relay:
            self.relay.stop()
        in_parallel(lambda c: c.down(), (self.src, self.dst))


def in_parallel(fn, items):
    """fn(item) for every item, each on a thread of its own; returns when all are done."""
    threads = [threading.Thread(target=fn, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    sys.exit(main())
