// A franz-go client through mirrorgate: kadm admin calls, an idempotent producer, a
// transactional producer (one commit, one abort), a read-committed consumer group,
// then a write to a mirror topic. Prints one JSON object with what each step saw.
//
// Usage: franz BOOTSTRAP TOPIC MIRROR_TOPIC GROUP
package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"mirrorgate.test/clients/report"
)

func main() {
	bootstrap, topic, mirror, group := report.Args("franz")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	seen := map[string]any{}

	admin, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	if err != nil {
		report.Fail("admin client", err)
	}
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		report.Fail("create topic", err)
	}
	retention := "7200000"
	altered, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: &retention}}, topic)
	if err == nil {
		_, err = altered.On(topic, nil)
	}
	if err != nil {
		report.Fail("alter configs", err)
	}
	// A config change reaches every broker shortly after the controller took it.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		described, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			report.Fail("describe configs", err)
		}
		for _, rc := range described {
			for _, c := range rc.Configs {
				if c.Key == "retention.ms" && c.Value != nil {
					seen["retention.ms"] = *c.Value
				}
			}
		}
		if seen["retention.ms"] == retention {
			break
		}
	}

	producer, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic))
	if err != nil {
		report.Fail("producer", err)
	}
	var records []*kgo.Record
	for i := 0; i < 100; i++ {
		records = append(records, keyed(fmt.Sprintf("idem-%d", i)))
	}
	seen["idempotent_errors"] = report.Errors(producer.ProduceSync(ctx, records...).FirstErr())
	producer.Close()

	txn, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID(group+"-txn"))
	if err != nil {
		report.Fail("transactional producer", err)
	}
	for round, prefix := range []string{"txn", "aborted"} {
		if err := txn.BeginTransaction(); err != nil {
			report.Fail("begin", err)
		}
		count := 50
		if round == 1 {
			count = 10
		}
		var batch []*kgo.Record
		for i := 0; i < count; i++ {
			batch = append(batch, keyed(fmt.Sprintf("%s-%d", prefix, i)))
		}
		produceErr := txn.ProduceSync(ctx, batch...).FirstErr()
		commit := kgo.TryCommit
		if round == 1 {
			commit = kgo.TryAbort
		} else {
			seen["transactional_errors"] = report.Errors(produceErr)
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			report.Fail("end transaction", err)
		}
	}
	txn.Close()

	consumer, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		report.Fail("consumer", err)
	}
	consumed, aborted := 0, 0
	for consumed < 150 && ctx.Err() == nil {
		fetches := consumer.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 {
			report.Fail("poll", errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			consumed++
			if strings.HasPrefix(string(r.Value), "aborted-") {
				aborted++
			}
		})
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		report.Fail("commit", err)
	}
	consumer.Close()
	seen["consumed"] = consumed
	seen["consumed_aborted"] = aborted
	offsets, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		report.Fail("fetch offsets", err)
	}
	committed := int64(0)
	offsets.Each(func(o kadm.OffsetResponse) { committed += o.At })
	seen["committed"] = committed

	toDelete := kadm.Offsets{}
	toDelete.Add(kadm.Offset{Topic: topic, Partition: 0, At: 10})
	deleted, err := adm.DeleteRecords(ctx, toDelete)
	if err != nil {
		report.Fail("delete records", err)
	}
	deleted.Each(func(r kadm.DeleteRecordsResponse) {
		if r.Err != nil {
			report.Fail("delete records", r.Err)
		}
		seen["low_watermark_after_delete"] = r.LowWatermark
	})

	// A write to a mirror topic: refused, and the client says why.
	writer, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.RecordRetries(0))
	if err != nil {
		report.Fail("mirror writer", err)
	}
	refused := writer.ProduceSync(ctx, &kgo.Record{Topic: mirror, Value: []byte("not allowed")}).FirstErr()
	seen["mirror_write"] = report.Text(refused)
	writer.Close()
	admin.Close()

	report.Print(seen)
}

// keyed is a record whose key is its value, so records spread over the partitions.
func keyed(value string) *kgo.Record {
	return &kgo.Record{Key: []byte(value), Value: []byte(value)}
}
