package server

import "testing"

// A split's new group waits until its parent has delivered up to the
// fence; then, or with no parent in the watch, it flows.
func TestWatchGateHoldsTheChildUntilTheFence(t *testing.T) {
	parent := &watchGroup{name: "data-0", delivered: 5}
	child := &watchGroup{name: "data-1", gate: &watchGate{group: "data-0", revision: 9}}
	w := &watcher{groups: []*watchGroup{parent, child}}
	if !w.held(child) {
		t.Fatal("parent at 5, fence at 9: got the child flowing, want it held")
	}
	parent.delivered = 9
	if w.held(child) || child.gate != nil {
		t.Fatalf("parent at the fence: got held %v gate %v, want flowing and the gate gone", w.held(child), child.gate)
	}
	orphan := &watchGroup{name: "data-2", gate: &watchGate{group: "data-7", revision: 9}}
	w.groups = append(w.groups, orphan)
	if w.held(orphan) {
		t.Fatal("a parent the watch does not cover: got the child held, want it flowing")
	}
}
