"""A confluent-kafka (librdkafka) client through mirrorgate: admin calls, an idempotent
and a transactional producer, a consumer group, then a write to a mirror topic.

Usage: confluent_kafka_client.py BOOTSTRAP TOPIC MIRROR_TOPIC GROUP
Prints one JSON object with what each step saw; exits 1 on an unexpected error.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic)

bootstrap, topic, mirror, group = sys.argv[1:5]
seen = {}


def wait(futures):
    for future in futures.values():
        future.result(timeout=30)


admin = AdminClient({"bootstrap.servers": bootstrap})
wait(admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]))
resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
wait(admin.incremental_alter_configs([ConfigResource(
    ConfigResource.Type.TOPIC, topic,
    incremental_configs=[ConfigEntry("retention.ms", "7200000",
                                     incremental_operation=AlterConfigOpType.SET)])]))
# A config change reaches every broker shortly after the controller took it.
deadline = time.monotonic() + 10
while True:
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    seen["retention.ms"] = described["retention.ms"].value
    if seen["retention.ms"] == "7200000" or time.monotonic() > deadline:
        break
    time.sleep(0.2)


def produce_all(producer, values):
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(str(err))

    for value in values:
        producer.produce(topic, value=value.encode(), key=value.encode(), on_delivery=report)
        producer.poll(0)
    producer.flush(30)
    return errors


idempotent = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
seen["idempotent_errors"] = produce_all(idempotent, [f"idem-{i}" for i in range(100)])

transactional = Producer({"bootstrap.servers": bootstrap,
                          "transactional.id": f"{group}-txn"})
transactional.init_transactions(30)
transactional.begin_transaction()
seen["transactional_errors"] = produce_all(transactional, [f"txn-{i}" for i in range(50)])
transactional.commit_transaction(30)
transactional.begin_transaction()
produce_all(transactional, [f"aborted-{i}" for i in range(10)])
transactional.abort_transaction(30)

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                     "enable.auto.commit": False})
consumer.subscribe([topic])
values = []
for _ in range(600):
    if len(values) >= 150:
        break
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        if message.error().code() == KafkaError._PARTITION_EOF:
            continue
        raise RuntimeError(str(message.error()))
    values.append(message.value().decode())
consumer.commit(asynchronous=False)
committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=30)
consumer.close()
seen["consumed"] = len(values)
seen["consumed_aborted"] = sum(v.startswith("aborted-") for v in values)
seen["committed"] = sum(tp.offset for tp in committed if tp.offset >= 0)

low = 0
deleted = admin.delete_records([TopicPartition(topic, 0, 10)])
for future in deleted.values():
    low = future.result(timeout=30).low_watermark
seen["low_watermark_after_delete"] = low

# A write to a mirror topic: refused, and the client says why.
refused = []
plain = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                  "retries": 0, "acks": "all"})
plain.produce(mirror, value=b"not allowed",
              on_delivery=lambda err, _msg: refused.append(
                  {"code": err.name() if err else None, "message": str(err) if err else None}))
plain.flush(30)
seen["mirror_write"] = refused[0] if refused else None

print(json.dumps(seen))
