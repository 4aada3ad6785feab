package metanode

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/metamq/meta/rocks"
)

// failingStores fail every call with err, but for the misses raft must
// see exactly as they are.
type failingStores struct{ err error }

func (f failingStores) Set([]byte, []byte) error           { return f.err }
func (f failingStores) SetUint64([]byte, uint64) error     { return f.err }
func (f failingStores) Get(k []byte) ([]byte, error)       { return nil, f.miss(k) }
func (f failingStores) GetUint64(k []byte) (uint64, error) { return 0, f.miss(k) }
func (f failingStores) FirstIndex() (uint64, error)        { return 0, nil }
func (f failingStores) LastIndex() (uint64, error)         { return 0, nil }
func (f failingStores) StoreLog(*raft.Log) error           { return f.err }
func (f failingStores) StoreLogs([]*raft.Log) error        { return f.err }
func (f failingStores) DeleteRange(uint64, uint64) error   { return f.err }
func (f failingStores) GetLog(i uint64, _ *raft.Log) error {
	if i == 0 {
		return raft.ErrLogNotFound
	}
	return f.err
}

func (f failingStores) miss(k []byte) error {
	if string(k) == "missing" {
		return rocks.ErrNotFound
	}
	return f.err
}

// callEnds runs call on a goroutine of its own and reports whether it
// returned (false: the goroutine ended inside it, runtime.Goexit).
func callEnds(call func() error) (returned bool, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = call()
		returned = true
	}()
	<-done
	return returned, err
}

// The guard between raft and its stores: before raft runs, errors pass
// through; once armed, a failure is reported (a write as one), a call
// raft would panic on ends the calling goroutine instead of returning,
// and the misses raft recognises by identity or text pass unchanged.
func TestStoreGuard(t *testing.T) {
	damaged := errors.New("Corruption: block checksum mismatch")
	type report struct {
		err   error
		write bool
	}
	var got []report
	sg := &storeGuard{failed: func(err error, write bool) { got = append(got, report{err, write}) }}
	st := guardedStable{failingStores{damaged}, sg}
	ls := guardedLogs{failingStores{damaged}, sg}

	if ok, err := callEnds(func() error { return st.SetUint64([]byte("CurrentTerm"), 2) }); !ok || !errors.Is(err, damaged) || len(got) != 0 {
		t.Fatalf("before raft runs: returned %v with %v, %d reports; want the error returned, none reported", ok, err, len(got))
	}
	sg.armed.Store(true)

	for _, c := range []struct {
		name        string
		call        func() error
		ends, write bool
	}{
		{"stable write", func() error { return st.SetUint64([]byte("CurrentTerm"), 3) }, true, true},
		{"stable set", func() error { return st.Set([]byte("LastVoteCand"), []byte("n1")) }, true, true},
		{"log read", func() error { return ls.GetLog(7, &raft.Log{}) }, true, false},
		{"stable read", func() error { _, err := st.GetUint64([]byte("LastVoteTerm")); return err }, false, false},
		{"log write", func() error { return ls.StoreLogs([]*raft.Log{{Index: 8}}) }, false, true},
		{"log delete", func() error { return ls.DeleteRange(1, 5) }, false, true},
	} {
		got = nil
		returned, err := callEnds(c.call)
		if returned == c.ends {
			t.Errorf("%s: returned %v, want %v (raft panics on what it cannot return)", c.name, returned, !c.ends)
		}
		if returned && !errors.Is(err, damaged) {
			t.Errorf("%s: got %v, want the store's error", c.name, err)
		}
		if len(got) != 1 || !errors.Is(got[0].err, damaged) || got[0].write != c.write {
			t.Errorf("%s: reported %v, want one report of the store's error, write %v", c.name, got, c.write)
		}
	}

	got = nil
	if err := ls.GetLog(0, &raft.Log{}); err != raft.ErrLogNotFound { // raft compares with ==
		t.Errorf("missing entry: got %v, want raft.ErrLogNotFound itself", err)
	}
	if _, err := st.GetUint64([]byte("missing")); err == nil || err.Error() != "not found" {
		t.Errorf("missing stable key: got %v, want the text \"not found\"", err)
	}
	if len(got) != 0 {
		t.Errorf("misses reported as failures: %v", got)
	}
}

// raft.NewRaft panics on a log entry it cannot read or a term it cannot
// store while it starts: startRaft returns the failure the guard saw
// instead, and lets any other panic go on.
func TestStartRaftTurnsAStoreFailurePanicIntoAnError(t *testing.T) {
	damaged := errors.New("Corruption: block checksum mismatch")
	sg := &storeGuard{failed: func(error, bool) { t.Error("a failure before raft runs reported as one while running") }}
	ls := guardedLogs{failingStores{damaged}, sg}
	r, err := sg.startRaft(func() (*raft.Raft, error) {
		if err := ls.GetLog(3, &raft.Log{}); err != nil {
			panic(err) // as raft's NewRaft does
		}
		return nil, nil
	})
	if r != nil || !errors.Is(err, damaged) {
		t.Fatalf("start after a failed log read: got %v, %v; want no raft and the store's error", r, err)
	}

	other := &storeGuard{}
	defer func() {
		if p := recover(); p != "unrelated" {
			t.Errorf("a panic without a store failure: recovered %v, want it to go on", p)
		}
	}()
	_, _ = other.startRaft(func() (*raft.Raft, error) { panic("unrelated") })
	t.Error("startRaft returned after a panic without a store failure")
}
