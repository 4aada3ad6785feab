package server_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metamq/meta/metanode/metanodetest"
	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// BenchmarkPutSessions puts sessions in batches of 1, 100 and 1000 from 20
// concurrent callers into an in-process 3-node cluster with two data
// groups, and reports sessions per second.
func BenchmarkPutSessions(b *testing.B) {
	c := metanodetest.Start(b, metanodetest.Options{DataGroups: 2})
	cl := c.Client("")
	var next atomic.Int64
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			b.SetParallelism(10) // 20 callers on 2 cores
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				req := &metapb.PutSessionsRequest{Sessions: make([]*metapb.Session, batch)}
				for pb.Next() {
					for i := range req.Sessions {
						req.Sessions[i] = &metapb.Session{ClientId: fmt.Sprintf("bench-%d", next.Add(1)), BrokerId: "b1",
							Connected: true, ExpiryIntervalSeconds: 3600, State: make([]byte, 64)}
					}
					if _, err := cl.PutSessions(b.Context(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "sessions/s")
		})
	}
}

// BenchmarkMultiPut puts keys (64-byte values) in batches of 1 (Put) and
// 100 and 1000 (MultiPut) from 20 concurrent callers into an in-process
// 3-node cluster with two data groups, and reports keys per second.
func BenchmarkMultiPut(b *testing.B) {
	c := metanodetest.Start(b, metanodetest.Options{DataGroups: 2})
	cl := c.Client("")
	var next atomic.Int64
	value := make([]byte, 64)
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			b.SetParallelism(10) // 20 callers on 2 cores
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := &metapb.MultiPutRequest{Puts: make([]*metapb.PutRequest, batch)}
					for i := range req.Puts {
						req.Puts[i] = &metapb.PutRequest{Key: fmt.Appendf(nil, "bench/%d", next.Add(1)), Value: value}
					}
					var err error
					if batch == 1 {
						_, err = cl.Put(b.Context(), req.Puts[0])
					} else {
						_, err = cl.MultiPut(b.Context(), req)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "keys/s")
		})
	}
}

// BenchmarkCoalesce puts and gets single keys (64-byte values) from 20
// and 256 concurrent callers into an in-process 3-node cluster with two
// data groups, with the client's coalescing on and off (same run), and
// reports keys per second.
func BenchmarkCoalesce(b *testing.B) {
	c := metanodetest.Start(b, metanodetest.Options{DataGroups: 2})
	var next atomic.Int64
	value := make([]byte, 64)
	for _, coalesce := range []bool{true, false} {
		cl, err := client.New(client.Config{Endpoints: c.Endpoints(), RequestTimeout: 10 * time.Second,
			Dialer: c.Net.Dialer(metanodetest.Client), NoCoalesce: !coalesce})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cl.Close() })
		for _, op := range []string{"put", "get"} {
			for _, callers := range []int{20, 256} {
				b.Run(fmt.Sprintf("%s/callers=%d/coalesce=%t", op, callers, coalesce), func(b *testing.B) {
					b.SetParallelism(callers / 2) // on 2 cores
					start := time.Now()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							key := fmt.Appendf(nil, "bench/%d", next.Add(1))
							var err error
							if op == "put" {
								_, err = cl.Put(b.Context(), &metapb.PutRequest{Key: key, Value: value})
							} else {
								_, err = cl.Get(b.Context(), &metapb.GetRequest{Key: key})
							}
							if err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "keys/s")
				})
			}
		}
	}
}

// BenchmarkWatchDelivery measures how fast a watch delivers KV puts made
// by 20 concurrent writers (events per second, end to end).
func BenchmarkWatchDelivery(b *testing.B) {
	c := metanodetest.Start(b, metanodetest.Options{DataGroups: 2})
	cl := c.Client("")
	var got atomic.Int64
	ctx := b.Context()
	done := make(chan error, 1)
	go func() {
		done <- cl.Watch(ctx, &metapb.WatchRequest{Prefix: []byte("wb/")}, func(resp *metapb.WatchResponse) error {
			got.Add(int64(len(resp.Events)))
			return nil
		})
	}()
	// Let the watch start before the clock does.
	for i := 0; got.Load() == 0; i++ {
		if _, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte("wb/warm"), Value: []byte("v")}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	base := got.Load()
	var n atomic.Int64
	b.SetParallelism(10)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("wb/%d", n.Add(1))
			if _, err := cl.Put(ctx, &metapb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for got.Load()-base < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
