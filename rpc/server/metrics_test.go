package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Every streaming method's series is exported before any stream opens,
// at 0; unary methods get none until called.
func TestStreamSeriesExistBeforeAnyStream(t *testing.T) {
	reg := prometheus.NewRegistry()
	MetricsOptions(reg)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	open := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "meta_grpc_streams_open" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				open[l.GetValue()] = m.GetGauge().GetValue()
			}
		}
	}
	for _, method := range []string{"/meta.v1.Watch/Watch", "/meta.v1.Cluster/Backup"} {
		if v, ok := open[method]; !ok || v != 0 {
			t.Errorf("%s: got %v (present %v), want a series at 0", method, v, ok)
		}
	}
	if _, ok := open["/meta.v1.KV/Put"]; ok {
		t.Error("a unary method has a streams series")
	}
}
