"""The invariants, checked after the faults stop and the mirrors caught up.

Every check appends Violation objects; none stops the others. Records are read with
librdkafka: from the source directly, and from the mirrors through a proxy.
"""

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from . import topology
from .workload import COMPACTED, FILLER_KEY, LOCAL_GROUPS, SYNCED_GROUPS, TOPICS


class Violation:
    def __init__(self, check, where, detail, wall=None):
        self.check = check
        self.where = where
        self.detail = detail
        self.wall = wall  # time the offending record was written, when known

    def __str__(self):
        return "%s %s: %s" % (self.check, self.where, self.detail)


def read_partition(bootstrap, topic, partition, end, start=-2, timeout=120):
    """[(offset, key, value, headers, timestamp)] of [start, end) read committed
    (start -2: the log start)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "chaos-checker",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.max.bytes": 8 << 20,
        }
    )
    out = []
    try:
        c.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = c.consume(1000, 1.0)
            done = False
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == -191:  # _PARTITION_EOF
                        if m.offset() >= end:
                            done = True
                        continue
                    raise RuntimeError("%s-%d: %s" % (topic, partition, err))
                if m.offset() >= end:
                    done = True
                    continue
                out.append((m.offset(), m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()))
            if done:
                break
        else:
            raise RuntimeError("%s-%d: not read to %d in %ds" % (topic, partition, end, timeout))
    finally:
        c.close()
    return out


def watermarks(bootstrap, tps):
    """{(topic, partition): (low, high)}; (-1, -1) where the partition is not there
    (yet) or does not answer."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-checker"})
    out = {}
    try:
        for tp in tps:
            try:
                out[tp] = c.get_watermark_offsets(TopicPartition(*tp), timeout=30, cached=False)
            except KafkaException:
                out[tp] = (-1, -1)
    finally:
        c.close()
    return out


def mirror_line(describe, topic):
    """The topic line of `mirrors --describe` output for `topic`, and its State."""
    line = next((l for l in describe.splitlines() if l.startswith("Topic: %s\t" % topic)), None)
    if line is None:
        return None, None
    return line, dict(f.split(": ", 1) for f in line.split("\t") if ": " in f).get("State")


class Checker:
    def __init__(self, src, dst, instances, log):
        self.src = src
        self.dst = dst
        self.instances = instances
        self.log = log
        self.violations = []
        self.records_checked = 0
        self.partitions_checked = 0

    def fail(self, check, where, detail, wall=None):
        v = Violation(check, where, detail, wall)
        self.violations.append(v)
        self.log("VIOLATION %s" % v)

    # --- lag ---

    def wait_caught_up(self, tps, timeout):
        """Until every mirror partition ends where its source does."""
        deadline = time.monotonic() + timeout
        while True:
            src = watermarks(self.src.bootstrap, tps)
            dst = watermarks(self.dst.bootstrap, tps)
            behind = {tp: (src[tp][1], dst[tp][1]) for tp in tps if src[tp][1] != dst[tp][1]}
            if not behind:
                return src
            if time.monotonic() > deadline:
                for tp, (s, d) in sorted(behind.items()):
                    self.fail("lag", "%s-%d" % tp, "source ends at %d, mirror at %d after %ds" % (s, d, timeout))
                return src
            time.sleep(2)

    # --- records ---

    def records(self, tps, ends, proxy):
        for tp in tps:
            topic, partition = tp
            end = ends[tp][1]
            where = "%s-%d" % tp
            try:
                source = read_partition(self.src.bootstrap, topic, partition, end)
                mirror = read_partition(proxy, topic, partition, end)
            except RuntimeError as e:
                self.fail("read", where, str(e))
                continue
            self.partitions_checked += 1
            self.records_checked += len(source)
            fillers = [m[0] for m in mirror if m[1] == FILLER_KEY]
            if fillers:
                self.fail("fillers-hidden", where, "offsets %s read as records" % fillers[:5])
            # Below the source's log start only the log-start check speaks.
            low = ends[tp][0]
            mirror = [m for m in mirror if m[0] >= low]
            if topic in COMPACTED:
                self._compare_compacted(where, source, mirror)
            else:
                self._compare(where, source, mirror)

    def _compare(self, where, source, mirror):
        if source == mirror:
            return
        by_offset = {m[0]: m for m in mirror}
        for rec in source:
            got = by_offset.get(rec[0])
            if got != rec:
                self.fail(
                    "identical",
                    where,
                    "offset %d: source %s, mirror %s" % (rec[0], _show(rec), _show(got)),
                    rec[4][1] / 1000 if rec[4][1] > 0 else None,
                )
                return
        extra = sorted(set(by_offset) - {r[0] for r in source})
        self.fail("identical", where, "mirror has offsets the source has not: %s" % extra[:5])

    def _compare_compacted(self, where, source, mirror):
        # Both sides compact on their own: an offset present on both must be the same
        # record, and each key's last record must be on both.
        src = {r[0]: r for r in source}
        dst = {r[0]: r for r in mirror}
        for off in sorted(set(src) & set(dst)):
            if src[off] != dst[off]:
                self.fail("identical", where, "offset %d: source %s, mirror %s" % (off, _show(src[off]), _show(dst[off])))
                return
        for name, side in (("source", src), ("mirror", dst)):
            last = {}
            for off in sorted(side):
                last[side[off][1]] = off
            other = dst if side is src else src
            for key, off in last.items():
                if off not in other:
                    later = [o for o in other if o > off and other[o][1] == key]
                    if not later:
                        self.fail("compacted-last", where, "%s's last record of key %r (offset %d) is missing on the other side" % (name, key, off))
                        return

    def log_starts(self, tps, proxy, moved):
        src = watermarks(self.src.bootstrap, tps)
        dst = watermarks(proxy, tps)
        for tp in tps:
            if tp[0] in COMPACTED:
                continue
            if src[tp][0] != dst[tp][0]:
                note = " (moved on the source by DeleteRecords)" if tp in moved else ""
                self.fail("log-start", "%s-%d" % tp, "source starts at %d, mirror at %d%s" % (src[tp][0], dst[tp][0], note))

    # --- states ---

    def mirror_states(self, expected):
        views = {}
        for inst in self.instances:
            out = inst.cli("mirrors", "--describe", "--link", topology.LINK)
            views[inst.name] = out.stdout
            for topic in expected:
                line, state = mirror_line(out.stdout, topic)
                if line is None:
                    self.fail("mirror-state", "%s@%s" % (topic, inst.name), "not listed: %s" % (out.stdout + out.stderr).strip()[:200])
                elif state != "ACTIVE":
                    self.fail("mirror-state", "%s@%s" % (topic, inst.name), line.strip())
        return views

    # --- groups ---

    def group_offsets(self, mirrored, timeout):
        src_admin = AdminClient({"bootstrap.servers": self.src.bootstrap})
        dst_admin = AdminClient({"bootstrap.servers": self.dst.bootstrap})
        deadline = time.monotonic() + timeout
        for group, topics in SYNCED_GROUPS.items():
            tps = [TopicPartition(t, p) for t in topics for p in range(mirrored[t])]
            want = _committed(src_admin, group, tps)
            while True:
                got = _committed(dst_admin, group, tps)
                if got == want:
                    break
                if time.monotonic() > deadline:
                    diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
                    self.fail("group-offsets", group, "source vs destination %s" % dict(sorted(diff.items())[:6]))
                    break
                time.sleep(2)
        listed = {g.group_id for g in dst_admin.list_consumer_groups().result(30).valid}
        for group in LOCAL_GROUPS:
            if group in listed:
                self.fail("group-filter", group, "a group the filters exclude exists on the destination")

    # --- configs ---

    def configs(self, topics, keys, timeout):
        src_admin = AdminClient({"bootstrap.servers": self.src.bootstrap})
        dst_admin = AdminClient({"bootstrap.servers": self.dst.bootstrap})
        deadline = time.monotonic() + timeout
        for topic in topics:
            while True:
                s = _configs(src_admin, topic, keys)
                d = _configs(dst_admin, topic, keys)
                if s == d:
                    break
                if time.monotonic() > deadline:
                    self.fail("configs", topic, "source %s, mirror %s" % (s, d))
                    break
                time.sleep(2)

    # --- counters ---

    def counters(self, before, after, source_window):
        """The copied-record and filler counters of all instances, summed, moved by
        exactly what the source got in the final window."""
        copied = sum(topology.metric_sum(m, "mirrorgate_replicated_records_total") for m in after) - sum(
            topology.metric_sum(m, "mirrorgate_replicated_records_total") for m in before
        )
        fillers = sum(topology.metric_sum(m, "mirrorgate_filler_records_total") for m in after) - sum(
            topology.metric_sum(m, "mirrorgate_filler_records_total") for m in before
        )
        records, offsets = source_window
        if copied != records:
            self.fail("counters", "replicated_records", "counted %d, the source got %d records" % (copied, records))
        if copied + fillers != offsets:
            self.fail("counters", "filler_records", "records %d + fillers %d, the source's offsets moved by %d" % (copied, fillers, offsets))
        return copied, fillers


def _committed(admin, group, tps):
    from confluent_kafka import ConsumerGroupTopicPartitions

    try:
        res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])[group].result(30)
    except Exception:  # noqa: BLE001 - an unknown group has no offsets
        return {}
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions if tp.offset >= 0}


def _configs(admin, topic, keys):
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    entries = list(res.values())[0].result(30)
    return {k: entries[k].value for k in keys if k in entries}


def _show(rec):
    if rec is None:
        return "nothing"
    off, key, value, headers, ts = rec
    v = value[:40] if value else value
    return "(offset %d key %r value %r%s headers %d ts %s)" % (off, key, v, "..." if value and len(value) > 40 else "", len(headers), ts)
