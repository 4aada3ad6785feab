package client

import (
	"slices"
	"testing"

	"github.com/metamq/meta/rpc/metapb"
)

func ev(g string, rev uint64, key string) *metapb.WatchEvent {
	return &metapb.WatchEvent{Group: g, Revision: rev, Kv: &metapb.KeyValue{Key: []byte(key)}}
}

func keys(resp *metapb.WatchResponse) []string {
	if resp == nil {
		return nil
	}
	var out []string
	for _, e := range resp.Events {
		out = append(out, string(e.Kv.Key))
	}
	return out
}

// A resumed stream repeats the events of a revision the server had split
// over responses; the watch hands each to the callback once, and resumes
// from the last revision delivered in full.
func TestWatchStateSkipsRepeatsOfASplitRevision(t *testing.T) {
	st := &watchState{req: &metapb.WatchRequest{}, last: map[string]uint64{}, partRev: map[string]uint64{},
		partN: map[string]int{}, seen: map[string]int{}}
	steps := []struct {
		name      string
		resume    bool // a new stream starts before this response
		resp      *metapb.WatchResponse
		want      []string
		wantStart uint64 // data-0's start revision if resumed after this step
	}{
		{"start", false, &metapb.WatchResponse{Revisions: map[string]uint64{"data-0": 4}, Progress: true}, nil, 5},
		{"whole revision", false, &metapb.WatchResponse{Events: []*metapb.WatchEvent{ev("data-0", 5, "a")}, Revisions: map[string]uint64{"data-0": 5}}, []string{"a"}, 6},
		{"first part of 7", false, &metapb.WatchResponse{Events: []*metapb.WatchEvent{ev("data-0", 7, "b"), ev("data-0", 7, "c")}, Revisions: map[string]uint64{"data-0": 6}}, []string{"b", "c"}, 7},
		{"resumed: start", true, &metapb.WatchResponse{Revisions: map[string]uint64{"data-0": 6}, Progress: true}, nil, 7},
		{"resumed: 7 again, longer", false, &metapb.WatchResponse{Events: []*metapb.WatchEvent{ev("data-0", 7, "b"), ev("data-0", 7, "c"), ev("data-0", 7, "d")}, Revisions: map[string]uint64{"data-0": 6}}, []string{"d"}, 7},
		{"rest of 7 and 8", false, &metapb.WatchResponse{Events: []*metapb.WatchEvent{ev("data-0", 7, "e"), ev("data-0", 8, "f")}, Revisions: map[string]uint64{"data-0": 8}}, []string{"e", "f"}, 9},
		{"resumed again: nothing repeats", true, &metapb.WatchResponse{Events: []*metapb.WatchEvent{ev("data-0", 9, "g")}, Revisions: map[string]uint64{"data-0": 9}}, []string{"g"}, 10},
		{"a repeat of a whole revision is dropped", false, &metapb.WatchResponse{Events: []*metapb.WatchEvent{ev("data-0", 9, "g")}, Revisions: map[string]uint64{"data-0": 9}}, nil, 10},
	}
	for _, s := range steps {
		if s.resume {
			st.resume()
		}
		if got := keys(st.filter(s.resp)); !slices.Equal(got, s.want) {
			t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
		}
		if got := st.request().StartRevisions["data-0"]; got != s.wantStart {
			t.Fatalf("%s: resume would start at %d, want %d", s.name, got, s.wantStart)
		}
	}
}
