// A segmentio/kafka-go client through mirrorgate: admin calls, a writer (kafka-go has
// neither idempotence nor transactions), a read-committed consumer group, then a
// write to a mirror topic. Prints one JSON object with what each step saw.
//
// Usage: kafkago BOOTSTRAP TOPIC MIRROR_TOPIC GROUP
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"mirrorgate.test/clients/report"
)

func main() {
	bootstrap, topic, mirror, group := report.Args("kafkago")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	seen := map[string]any{}

	client := &kafka.Client{Addr: kafka.TCP(bootstrap), Timeout: 30 * time.Second}
	created, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}},
	})
	if err == nil {
		err = created.Errors[topic]
	}
	if err != nil {
		report.Fail("create topic", err)
	}
	altered, err := client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{
		Resources: []kafka.IncrementalAlterConfigsRequestResource{{
			ResourceType: kafka.ResourceTypeTopic,
			ResourceName: topic,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{
				Name: "retention.ms", Value: "7200000", ConfigOperation: kafka.ConfigOperationSet,
			}},
		}},
	})
	if err == nil && len(altered.Resources) > 0 {
		err = altered.Resources[0].Error
	}
	if err != nil {
		report.Fail("alter configs", err)
	}
	// A config change reaches every broker shortly after the controller took it.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		described, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{
			Resources: []kafka.DescribeConfigRequestResource{{
				ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms"},
			}},
		})
		if err != nil {
			report.Fail("describe configs", err)
		}
		for _, r := range described.Resources {
			for _, e := range r.ConfigEntries {
				if e.ConfigName == "retention.ms" {
					seen["retention.ms"] = e.ConfigValue
				}
			}
		}
		if seen["retention.ms"] == "7200000" {
			break
		}
	}

	writer := &kafka.Writer{Addr: kafka.TCP(bootstrap), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 10 * time.Millisecond}
	var messages []kafka.Message
	for i := 0; i < 150; i++ {
		v := fmt.Sprintf("plain-%d", i)
		messages = append(messages, kafka.Message{Key: []byte(v), Value: []byte(v)})
	}
	seen["producer_errors"] = report.Errors(writer.WriteMessages(ctx, messages...))
	writer.Close()

	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, GroupID: group,
		Topic: topic, StartOffset: kafka.FirstOffset, IsolationLevel: kafka.ReadCommitted})
	consumed := 0
	for consumed < 150 {
		message, err := reader.FetchMessage(ctx)
		if err != nil {
			report.Fail("fetch", err)
		}
		consumed++
		if err := reader.CommitMessages(ctx, message); err != nil {
			report.Fail("commit", err)
		}
	}
	reader.Close()
	seen["consumed"] = consumed
	seen["consumed_aborted"] = 0
	fetched, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group,
		Topics: map[string][]int{topic: {0, 1}}})
	if err != nil {
		report.Fail("offset fetch", err)
	}
	committed := int64(0)
	for _, p := range fetched.Topics[topic] {
		if p.CommittedOffset > 0 {
			committed += p.CommittedOffset
		}
	}
	seen["committed"] = committed

	// A write to a mirror topic: refused, and the client says why.
	refusing := &kafka.Writer{Addr: kafka.TCP(bootstrap), Topic: mirror, MaxAttempts: 1,
		RequiredAcks: kafka.RequireAll, BatchTimeout: 10 * time.Millisecond}
	seen["mirror_write"] = report.Text(refusing.WriteMessages(ctx, kafka.Message{Value: []byte("not allowed")}))
	refusing.Close()

	report.Print(seen)
}
