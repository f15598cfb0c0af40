// A KafkaJS client through mirrorgate: admin calls, an idempotent producer, a
// transactional producer (one commit, one abort), a read-committed consumer group,
// then a write to a mirror topic. Prints one JSON object with what each step saw.
//
// Usage: node kafkajs_client.js BOOTSTRAP TOPIC MIRROR_TOPIC GROUP
"use strict";
const { Kafka, logLevel, ConfigResourceTypes } = require("kafkajs");

const [bootstrap, topic, mirror, group] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "mirrorgate-test", brokers: [bootstrap], logLevel: logLevel.NOTHING });
const seen = {};
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
const keyed = (prefix, count) =>
  Array.from({ length: count }, (_, i) => ({ key: `${prefix}-${i}`, value: `${prefix}-${i}` }));

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true });
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic,
      configEntries: [{ name: "retention.ms", value: "7200000" }] }],
  });
  // A config change reaches every broker shortly after the controller took it.
  for (const deadline = Date.now() + 10000; Date.now() < deadline; await sleep(200)) {
    const described = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ["retention.ms"] }],
    });
    seen["retention.ms"] = described.resources[0].configEntries[0].configValue;
    if (seen["retention.ms"] === "7200000") break;
  }

  const idempotent = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await idempotent.connect();
  seen.idempotent_errors = [];
  try {
    await idempotent.send({ topic, messages: keyed("idem", 100) });
  } catch (e) {
    seen.idempotent_errors.push(String(e));
  }
  await idempotent.disconnect();

  const transactional = kafka.producer({ transactionalId: `${group}-txn`, idempotent: true, maxInFlightRequests: 1 });
  await transactional.connect();
  seen.transactional_errors = [];
  let txn = await transactional.transaction();
  try {
    await txn.send({ topic, messages: keyed("txn", 50) });
    await txn.commit();
  } catch (e) {
    seen.transactional_errors.push(String(e));
  }
  txn = await transactional.transaction();
  await txn.send({ topic, messages: keyed("aborted", 10) });
  await txn.abort();
  await transactional.disconnect();

  const consumer = kafka.consumer({ groupId: group, readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let consumed = 0;
  let aborted = 0;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 120000);
    consumer.run({
      autoCommit: true,
      autoCommitThreshold: 1,
      eachMessage: async ({ message }) => {
        consumed++;
        if (message.value.toString().startsWith("aborted-")) aborted++;
        if (consumed >= 150) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  seen.consumed = consumed;
  seen.consumed_aborted = aborted;
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  seen.committed = offsets[0].partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);

  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: "10" }] });
  const low = await admin.fetchTopicOffsets(topic);
  seen.low_watermark_after_delete = Number(low.find(p => p.partition === 0).low);
  await admin.disconnect();

  // A write to a mirror topic: refused, and the client says why.
  const plain = kafka.producer({ retry: { retries: 0 } });
  await plain.connect();
  try {
    await plain.send({ topic: mirror, acks: -1, messages: [{ value: "not allowed" }] });
    seen.mirror_write = null;
  } catch (e) {
    seen.mirror_write = { type: e.type || e.name, message: e.message };
  }
  await plain.disconnect();
  console.log(JSON.stringify(seen));
}

main().catch(e => { console.error(e); process.exit(1); });
