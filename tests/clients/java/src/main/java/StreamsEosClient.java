import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.ErrorHandlerContext;
import org.apache.kafka.streams.errors.ProductionExceptionHandler;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * A Kafka Streams application with processing.guarantee=exactly_once_v2, through
 * mirrorgate: it counts the records of an input topic per key (an in-memory store with
 * its changelog topic, so Streams creates internal topics) into TOPIC, each update a
 * record; a read-committed group then reads TOPIC. A second application writes to a
 * mirror topic and reports the refusal.
 *
 * <p>Usage: StreamsEosClient BOOTSTRAP TOPIC MIRROR_TOPIC GROUP. Prints one JSON object
 * with what each step saw; exits 1 on an unexpected error.
 */
public final class StreamsEosClient {
    private static final int RECORDS = 150;
    private static final int KEYS = 10;

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        String mirror = args[2];
        String group = args[3];
        String input = topic + "-input";
        Map<String, Object> seen = new LinkedHashMap<>();

        try (Admin admin = Admin.create(Map.of("bootstrap.servers", bootstrap))) {
            admin.createTopics(List.of(
                    new NewTopic(input, 1, (short) -1), new NewTopic(topic, 1, (short) -1)))
                    .all().get();
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            AlterConfigOp set = new AlterConfigOp(
                    new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET);
            admin.incrementalAlterConfigs(Map.of(resource, List.of(set))).all().get();
            // A config change reaches every broker shortly after the controller took it.
            String retention = null;
            for (int i = 0; i < 50 && !"7200000".equals(retention); i++) {
                retention = admin.describeConfigs(List.of(resource)).all().get()
                        .get(resource).get("retention.ms").value();
                Thread.sleep(200);
            }
            seen.put("retention.ms", retention);

            seen.put("idempotent_errors", produceInput(bootstrap, input));

            List<String> streamsErrors = new ArrayList<>();
            try (KafkaStreams counting = start(bootstrap, group, countInto(input, topic), streamsErrors)) {
                seen.put("consumed", readCommitted(bootstrap, topic, group + "-reader", seen));
                // Streams commits the input offsets in its transactions.
                long committed = 0;
                for (int i = 0; i < 150 && committed < RECORDS; i++) {
                    Map<TopicPartition, OffsetAndMetadata> offsets =
                            admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                    OffsetAndMetadata at = offsets.get(new TopicPartition(input, 0));
                    committed = at == null ? 0 : at.offset();
                    Thread.sleep(200);
                }
                seen.put("committed", committed);
            }
            seen.put("transactional_errors", streamsErrors);

            admin.deleteRecords(Map.of(new TopicPartition(input, 0), RecordsToDelete.beforeOffset(10)))
                    .all().get();
            seen.put("low_watermark_after_delete",
                    admin.listOffsets(Map.of(new TopicPartition(input, 0),
                            org.apache.kafka.clients.admin.OffsetSpec.earliest()))
                            .all().get().get(new TopicPartition(input, 0)).offset());
        }

        seen.put("mirror_write", writeToMirror(bootstrap, input, mirror, group + "-mirror"));
        System.out.println(json(seen));
        System.exit(0);
    }

    /** RECORDS records over KEYS keys, with an idempotent producer; the errors it saw. */
    private static List<String> produceInput(String bootstrap, String input) {
        List<String> errors = new ArrayList<>();
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("enable.idempotence", "true");
        props.put("acks", "all");
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(props, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < RECORDS; i++) {
                producer.send(new ProducerRecord<>(input, "k" + (i % KEYS), "v" + i), (m, e) -> {
                    if (e != null) {
                        synchronized (errors) {
                            errors.add(e.toString());
                        }
                    }
                });
            }
            producer.flush();
        }
        return errors;
    }

    private static StreamsBuilder countInto(String input, String output) {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .groupByKey()
                .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts"))
                        .withKeySerde(Serdes.String())
                        .withValueSerde(Serdes.Long()))
                .toStream()
                .mapValues(Object::toString)
                .to(output, Produced.with(Serdes.String(), Serdes.String()));
        return builder;
    }

    private static KafkaStreams start(
            String bootstrap, String applicationId, StreamsBuilder builder, List<String> errors)
            throws Exception {
        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.STATE_DIR_CONFIG,
                Files.createTempDirectory("streams-eos-client").toString());
        // Every update is a record downstream (no cache folding them).
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, -1);
        props.put(StreamsConfig.PRODUCTION_EXCEPTION_HANDLER_CLASS_CONFIG, Recording.class);
        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        streams.setUncaughtExceptionHandler(e -> {
            synchronized (errors) {
                errors.add(rootMessage(e));
            }
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        streams.start();
        return streams;
    }

    /**
     * Reads TOPIC read-committed until every count arrived; the records read. Each
     * key's counts must be 1..RECORDS/KEYS once each: a record processed twice, or one
     * of an aborted transaction, would show as a repeated or out-of-range count.
     */
    private static int readCommitted(String bootstrap, String topic, String group, Map<String, Object> seen) {
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("auto.offset.reset", "earliest");
        props.put("isolation.level", "read_committed");
        props.put("enable.auto.commit", "false");
        int read = 0;
        int unexpected = 0;
        Map<String, List<Long>> counts = new HashMap<>();
        try (KafkaConsumer<String, String> consumer =
                new KafkaConsumer<>(props, new StringDeserializer(), new StringDeserializer())) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 120_000;
            while (read < RECORDS && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    read++;
                    long count = Long.parseLong(r.value());
                    List<Long> ofKey = counts.computeIfAbsent(r.key(), k -> new ArrayList<>());
                    if (count != ofKey.size() + 1 || count > RECORDS / KEYS) {
                        unexpected++;
                    }
                    ofKey.add(count);
                }
            }
            consumer.commitSync();
        }
        seen.put("consumed_aborted", unexpected);
        return read;
    }

    /** A second application writing to the mirror topic: what it is told. */
    private static String writeToMirror(String bootstrap, String input, String mirror, String applicationId)
            throws Exception {
        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
                .to(mirror, Produced.with(Serdes.String(), Serdes.String()));
        List<String> errors = new ArrayList<>();
        Recording.LAST.set(null);
        try (KafkaStreams streams = start(bootstrap, applicationId, builder, errors)) {
            long deadline = System.currentTimeMillis() + 60_000;
            while (Recording.LAST.get() == null && System.currentTimeMillis() < deadline) {
                Thread.sleep(200);
            }
            streams.close(Duration.ofSeconds(10));
        }
        return Recording.LAST.get();
    }

    /** Keeps what the producer was told; the task then fails, as by default. */
    public static final class Recording implements ProductionExceptionHandler {
        static final AtomicReference<String> LAST = new AtomicReference<>();

        @Override
        public ProductionExceptionHandlerResponse handle(
                ErrorHandlerContext context, ProducerRecord<byte[], byte[]> record, Exception exception) {
            LAST.compareAndSet(null, exception.getClass().getSimpleName() + ": " + exception.getMessage());
            return ProductionExceptionHandlerResponse.FAIL;
        }

        @Override
        public void configure(Map<String, ?> configs) {}
    }

    private static String rootMessage(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null) {
            root = root.getCause();
        }
        return root.toString();
    }

    private static String json(Object value) {
        if (value == null) {
            return "null";
        }
        if (value instanceof Number) {
            return value.toString();
        }
        if (value instanceof List<?> list) {
            List<String> items = new ArrayList<>();
            list.forEach(v -> items.add(json(v)));
            return "[" + String.join(",", items) + "]";
        }
        if (value instanceof Map<?, ?> map) {
            List<String> items = new ArrayList<>();
            map.forEach((k, v) -> items.add(json(k.toString()) + ":" + json(v)));
            return "{" + String.join(",", items) + "}";
        }
        StringBuilder out = new StringBuilder("\"");
        for (char c : value.toString().toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }
}
