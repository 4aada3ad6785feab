package server

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/metamq/meta/rpc/metapb"
)

// rpcMetrics are the node's gRPC figures. Labels are bounded: methods are
// the registered ones (gRPC runs no interceptor for an unknown method),
// codes are gRPC's, and reasons are meta's table (anything else counts as
// "other").
type rpcMetrics struct {
	handled *prometheus.CounterVec   // method, code
	errors  *prometheus.CounterVec   // method, reason, class
	latency *prometheus.HistogramVec // method (unary calls)
	streams *prometheus.GaugeVec     // method
	watches prometheus.Gauge
}

// MetricsOptions returns the server options that count every gRPC call
// into reg: calls by method and code, failures by meta's reason and class,
// unary latency, open streams and open watches. Put them before
// ServerOptions so that they see the status the caller gets.
func MetricsOptions(reg prometheus.Registerer) []grpc.ServerOption {
	m := &rpcMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meta_grpc_handled_total",
			Help: "gRPC calls completed, by method and status code."}, []string{"method", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meta_grpc_errors_total",
			Help: "gRPC calls that failed, by method, meta's reason (rpc/metapb/errors.go; none: a plain gRPC status) and class (retry, final, unknown)."},
			[]string{"method", "reason", "class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "meta_grpc_handling_seconds",
			Help:    "Time to answer a unary gRPC call, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14)}, []string{"method"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meta_grpc_streams_open",
			Help: "gRPC streams open, by method."}, []string{"method"}),
		watches: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meta_watches_open",
			Help: "Watch streams open on this node."}),
	}
	// Each streaming method's series exists from the start, at 0: a vector
	// with no series is not exported at all, so a node with no stream
	// open yet would show no family (a scrape could not tell "none open"
	// from "not counted"; TestMetricsScrape failed so in ci27).
	protoregistry.GlobalFiles.RangeFilesByPackage(metapb.File_rpc_metapb_watch_proto.Package(), func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				if md := sd.Methods().Get(j); md.IsStreamingServer() || md.IsStreamingClient() {
					m.streams.WithLabelValues("/" + string(sd.FullName()) + "/" + string(md.Name()))
				}
			}
		}
		return true
	})
	reg.MustRegister(m.handled, m.errors, m.latency, m.streams, m.watches)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
			m.done(info.FullMethod, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			open := m.streams.WithLabelValues(info.FullMethod)
			watch := strings.HasPrefix(info.FullMethod, "/meta.v1.Watch/")
			open.Inc()
			if watch {
				m.watches.Inc()
			}
			err := h(srv, ss)
			open.Dec()
			if watch {
				m.watches.Dec()
			}
			m.done(info.FullMethod, err)
			return err
		}),
	}
}

func (m *rpcMetrics) done(method string, err error) {
	st := status.Convert(err)
	m.handled.WithLabelValues(method, st.Code().String()).Inc()
	if err == nil {
		return
	}
	reason, class := "none", "none"
	if r := statusReason(st); r != "" {
		reason, class = r, className(metapb.ClassOf(r))
		if metapb.ClassOf(r) == metapb.ClassUnknown && r != metapb.ReasonOutcomeUnknown {
			reason = "other" // not in this release's table: keep the label set bounded
		}
	}
	m.errors.WithLabelValues(method, reason, class).Inc()
}

// statusReason is meta's reason carried in a status's ErrorInfo, or "".
func statusReason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == metapb.ErrorDomain {
			return info.Reason
		}
	}
	return ""
}

// className is a class as a label value.
func className(c metapb.Class) string {
	switch c {
	case metapb.ClassRetry:
		return "retry"
	case metapb.ClassFinal:
		return "final"
	}
	return "unknown"
}
