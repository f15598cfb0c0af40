// An IBM/sarama client through mirrorgate: ClusterAdmin calls, an idempotent producer,
// a transactional producer (one commit, one abort), a read-committed consumer group,
// then a write to a mirror topic. Prints one JSON object with what each step saw.
//
// Usage: sarama BOOTSTRAP TOPIC MIRROR_TOPIC GROUP
package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"mirrorgate.test/clients/report"
)

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V3_7_0_0
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	return c
}

// counter counts the records of a group session until it has seen enough.
type counter struct {
	want, consumed, aborted int
	done                    chan struct{}
}

func (c *counter) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *counter) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (c *counter) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for message := range claim.Messages() {
		c.consumed++
		if strings.HasPrefix(string(message.Value), "aborted-") {
			c.aborted++
		}
		session.MarkMessage(message, "")
		if c.consumed >= c.want {
			session.Commit()
			select {
			case <-c.done:
			default:
				close(c.done)
			}
			return nil
		}
	}
	return nil
}

func main() {
	bootstrap, topic, mirror, group := report.Args("sarama")
	brokers := []string{bootstrap}
	seen := map[string]any{}

	admin, err := sarama.NewClusterAdmin(brokers, config())
	if err != nil {
		report.Fail("admin", err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		report.Fail("create topic", err)
	}
	retention := "7200000"
	set := map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &retention},
	}
	if err := admin.IncrementalAlterConfig(sarama.TopicResource, topic, set, false); err != nil {
		report.Fail("alter configs", err)
	}
	// A config change reaches every broker shortly after the controller took it.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
		if err != nil {
			report.Fail("describe configs", err)
		}
		for _, e := range entries {
			if e.Name == "retention.ms" {
				seen["retention.ms"] = e.Value
			}
		}
		if seen["retention.ms"] == retention {
			break
		}
	}

	idem := config()
	idem.Producer.Idempotent = true
	idem.Net.MaxOpenRequests = 1
	seen["idempotent_errors"] = produce(brokers, idem, topic, "idem", 100, nil)

	txn := config()
	txn.Producer.Idempotent = true
	txn.Net.MaxOpenRequests = 1
	txn.Producer.Transaction.ID = group + "-txn"
	producer, err := sarama.NewSyncProducer(brokers, txn)
	if err != nil {
		report.Fail("transactional producer", err)
	}
	for round, prefix := range []string{"txn", "aborted"} {
		if err := producer.BeginTxn(); err != nil {
			report.Fail("begin", err)
		}
		count := 50
		if round == 1 {
			count = 10
		}
		errs := produce(brokers, txn, topic, prefix, count, producer)
		if round == 0 {
			seen["transactional_errors"] = errs
			if err := producer.CommitTxn(); err != nil {
				report.Fail("commit", err)
			}
		} else if err := producer.AbortTxn(); err != nil {
			report.Fail("abort", err)
		}
	}
	producer.Close()

	consumer := config()
	consumer.Consumer.IsolationLevel = sarama.ReadCommitted
	consumer.Consumer.Offsets.Initial = sarama.OffsetOldest
	consumer.Consumer.Offsets.AutoCommit.Enable = false
	groupClient, err := sarama.NewConsumerGroup(brokers, group, consumer)
	if err != nil {
		report.Fail("consumer group", err)
	}
	handler := &counter{want: 150, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	go func() {
		for ctx.Err() == nil {
			if err := groupClient.Consume(ctx, []string{topic}, handler); err != nil && ctx.Err() == nil {
				report.Fail("consume", err)
			}
		}
	}()
	select {
	case <-handler.done:
	case <-ctx.Done():
	}
	cancel()
	groupClient.Close()
	seen["consumed"] = handler.consumed
	seen["consumed_aborted"] = handler.aborted
	offsets, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
	if err != nil {
		report.Fail("group offsets", err)
	}
	committed := int64(0)
	for _, block := range offsets.Blocks[topic] {
		if block.Offset > 0 {
			committed += block.Offset
		}
	}
	seen["committed"] = committed

	if err := admin.DeleteRecords(topic, map[int32]int64{0: 10}); err != nil {
		report.Fail("delete records", err)
	}
	client, err := sarama.NewClient(brokers, config())
	if err != nil {
		report.Fail("client", err)
	}
	low, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
	if err != nil {
		report.Fail("log start", err)
	}
	seen["low_watermark_after_delete"] = low
	client.Close()
	admin.Close()

	// A write to a mirror topic: refused, and the client says why.
	plain := config()
	plain.Producer.Retry.Max = 0
	refused := produceTo(brokers, plain, mirror)
	seen["mirror_write"] = refused

	report.Print(seen)
}

// produce sends count records to topic (with its own producer unless one is given) and
// returns the errors it was told.
func produce(brokers []string, c *sarama.Config, topic, prefix string, count int, producer sarama.SyncProducer) []string {
	if producer == nil {
		p, err := sarama.NewSyncProducer(brokers, c)
		if err != nil {
			report.Fail("producer", err)
		}
		defer p.Close()
		producer = p
	}
	var messages []*sarama.ProducerMessage
	for i := 0; i < count; i++ {
		value := fmt.Sprintf("%s-%d", prefix, i)
		messages = append(messages, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(value), Value: sarama.StringEncoder(value)})
	}
	errs := []string{}
	if err := producer.SendMessages(messages); err != nil {
		errs = append(errs, err.Error())
	}
	return errs
}

func produceTo(brokers []string, c *sarama.Config, topic string) any {
	p, err := sarama.NewSyncProducer(brokers, c)
	if err != nil {
		report.Fail("mirror producer", err)
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("not allowed")})
	if err == nil {
		return nil
	}
	return err.Error()
}
