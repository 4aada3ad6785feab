package sm

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/sm/logpb"
)

// BenchmarkSessionsPut measures applying session batches (the reconnect
// storm): ops of `batch` sessions, one op per raft entry, new client ids.
func BenchmarkSessionsPut(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e := newEnv(b, KindData)
			state := make([]byte, 128)
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sp := &logpb.SessionsPut{Sessions: make([]*logpb.SessionPut, batch)}
				for j := range sp.Sessions {
					sp.Sessions[j] = &logpb.SessionPut{ClientId: fmt.Sprintf("client-%010d", n), BrokerId: "b1", Connected: true, ExpiryIntervalSeconds: 3600, State: state}
					n++
				}
				data, _ := EncodeBatch(&logpb.Batch{Ops: []*logpb.Op{{Op: &logpb.Op_SessionsPut{SessionsPut: sp}}}})
				e.m.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data})
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "sessions/s")
		})
	}
}
