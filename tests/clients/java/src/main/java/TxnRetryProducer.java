import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A transactional producer written the way Kafka documents it: each transaction of
 * RECORDS records (values "t.r", key "t") to every topic of TOPICS, held open PAUSE_MS
 * after its records are sent (so transactions are open most of the time), is committed; on an
 * abortable error the transaction is aborted and the same one sent again; a fatal
 * error ends the program (exit 2), and so do MAX_ABORTS aborts of one transaction
 * (exit 3).
 *
 * Prints one line per event: "committed T", "aborted T <error>", and at the end
 * "done <committed> <aborts>".
 *
 * With -Doffsets.group=G, each transaction also commits an offset of group G (as a
 * consume-transform-produce application does, with sendOffsetsToTransaction).
 *
 * With -Dabandon.every=K, the first attempt of every K-th transaction (0, K, 2K, ...)
 * is aborted once its records are acknowledged ("abandoned T"), and then sent again.
 *
 * With HOLD_AT and DIR, transaction HOLD_AT, once its records are acknowledged, creates
 * DIR/open and waits for DIR/release before it commits (a test holds it open that way).
 *
 * Usage: TxnRetryProducer BOOTSTRAP TOPICS TRANSACTIONAL_ID TRANSACTIONS RECORDS PAUSE_MS
 *        MAX_ABORTS [HOLD_AT DIR]
 */
public class TxnRetryProducer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String[] topics = args[1].split(",");
        String transactionalId = args[2];
        int transactions = Integer.parseInt(args[3]);
        int records = Integer.parseInt(args[4]);
        long pauseMs = Long.parseLong(args[5]);
        int maxAborts = Integer.parseInt(args[6]);
        String offsetsGroup = System.getProperty("offsets.group");
        int abandonEvery = Integer.parseInt(System.getProperty("abandon.every", "0"));
        int holdAt = args.length > 8 ? Integer.parseInt(args[7]) : -1;
        Path dir = args.length > 8 ? Paths.get(args[8]) : null;

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, System.getProperty("max.block.ms", "60000"));

        int aborts = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            for (int t = 0; t < transactions; t++) {
                int abortsOfThis = 0;
                boolean abandon = abandonEvery > 0 && t % abandonEvery == 0;
                while (true) {
                    try {
                        producer.beginTransaction();
                        for (int r = 0; r < records; r++) {
                            String value = t + "." + r;
                            for (String topic : topics) {
                                producer.send(new ProducerRecord<>(topic, Integer.toString(t), value));
                            }
                        }
                        if (offsetsGroup != null) {
                            producer.sendOffsetsToTransaction(
                                Map.of(new TopicPartition(topics[0], 0), new OffsetAndMetadata(t)),
                                new ConsumerGroupMetadata(offsetsGroup));
                        }
                        producer.flush();
                        if (abandon) {
                            abandon = false;
                            producer.abortTransaction();
                            System.out.println("abandoned " + t);
                            continue;
                        }
                        Thread.sleep(pauseMs);
                        if (t == holdAt) {
                            if (!Files.exists(dir.resolve("open"))) {
                                Files.createFile(dir.resolve("open"));
                            }
                            long deadline = System.currentTimeMillis() + 60_000;
                            while (!Files.exists(dir.resolve("release")) && System.currentTimeMillis() < deadline) {
                                Thread.sleep(20);
                            }
                        }
                        producer.commitTransaction();
                        System.out.println("committed " + t);
                        break;
                    } catch (ProducerFencedException | OutOfOrderSequenceException
                             | AuthorizationException | UnsupportedVersionException e) {
                        System.out.println("fatal " + t + " " + e);
                        System.out.flush();
                        System.exit(2);
                    } catch (KafkaException e) {
                        aborts++;
                        System.out.println("aborted " + t + " " + e.getClass().getSimpleName() + ": " + e.getMessage());
                        System.out.flush();
                        if (++abortsOfThis >= maxAborts) {
                            System.out.println("gave up " + t);
                            System.exit(3);
                        }
                        try {
                            producer.abortTransaction();
                        } catch (KafkaException fatal) {
                            System.out.println("fatal " + t + " " + fatal);
                            System.exit(2);
                        }
                    }
                }
            }
        }
        System.out.println("done " + transactions + " " + aborts);
    }
}
