package server

import (
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/rpc/transport"
)

// A forwarded admin call refused by the peer it reached (an abort of a
// split past its fence, answered by metadata-0's leader) reaches the
// user as the peer said it, with its reason, without the transport's
// "transport: peer call: rejected:" wrapping; a failure of the call
// itself keeps the whole text (it is the only explanation there is).
func TestPublicStatusUnwrapsAPeersRefusal(t *testing.T) {
	const said = "data-0: the split passed its fence (the parent's log released the range first); it goes on to its end"
	refused := fmt.Errorf("controller: abort: %w", &transport.PeerError{Kind: transport.KindRejected, Msg: said,
		Outcome: metapb.ReasonSplitFenced, Meta: map[string]string{metapb.MetaGroup: "data-0"}})
	st, _ := status.FromError(publicStatus(refused))
	if st.Message() != said {
		t.Fatalf("message: got %q, want %q", st.Message(), said)
	}
	if got := infoOf(st); got == nil || got.Reason != metapb.ReasonSplitFenced || got.Metadata[metapb.MetaGroup] != "data-0" {
		t.Fatalf("error info: got %v, want SPLIT_FENCED naming data-0", got)
	}
	failed := &transport.PeerError{Kind: transport.KindUnavailable, Msg: "call to n2 failed: connection refused"}
	if st, _ := status.FromError(publicStatus(failed)); st.Message() != failed.Error() {
		t.Fatalf("a failed call's message: got %q, want %q", st.Message(), failed.Error())
	}
}

func infoOf(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
