package verify

import (
	"hash/fnv"
	"io"
	"slices"
	"strings"
)

// modelEntry is an entry of a sortedState: compare orders entries by their
// key alone, hashTo writes the whole entry to the state's hash, same says
// whether two entries are the same to the model and String describes one.
type modelEntry[E any] interface {
	compare(E) int
	hashTo(io.Writer)
	same(E) bool
	String() string
}

// sortedState is a model state made of entries sorted by key, one entry a
// key: a consumer group's committed offsets (grpEntry), a data group's
// sessions (sessEntry). It is immutable once built; steps build new ones. A
// nil *sortedState is the empty state.
type sortedState[E modelEntry[E]] struct {
	entries []E
	hash    uint64
}

// newSortedState is the state of entries, which are sorted by key.
func newSortedState[E modelEntry[E]](entries []E) *sortedState[E] {
	h := fnv.New64a()
	for _, e := range entries {
		e.hashTo(h)
	}
	return &sortedState[E]{entries: entries, hash: h.Sum64()}
}

func (s *sortedState[E]) len() int {
	if s == nil {
		return 0
	}
	return len(s.entries)
}

// find returns the entry with the key of key.
func (s *sortedState[E]) find(key E) (E, bool) {
	var none E
	if s == nil {
		return none, false
	}
	i, ok := slices.BinarySearchFunc(s.entries, key, E.compare)
	if !ok {
		return none, false
	}
	return s.entries[i], true
}

// put returns s with each of puts added, or replacing the entry of its key.
func (s *sortedState[E]) put(puts []E) *sortedState[E] {
	var entries []E
	if s != nil {
		entries = slices.Clone(s.entries)
	}
	for _, e := range puts {
		i, ok := slices.BinarySearchFunc(entries, e, E.compare)
		if ok {
			entries[i] = e
		} else {
			entries = slices.Insert(entries, i, e)
		}
	}
	return newSortedState(entries)
}

func (s *sortedState[E]) equal(o *sortedState[E]) bool {
	if s.len() != o.len() {
		return false
	}
	if s.len() == 0 {
		return true
	}
	return s.hash == o.hash && slices.EqualFunc(s.entries, o.entries, E.same)
}

func (s *sortedState[E]) equalState(other any) bool {
	o, ok := other.(*sortedState[E])
	return ok && s.equal(o)
}

func (s *sortedState[E]) stateHash() uint64 {
	if s.len() == 0 {
		return 0
	}
	return s.hash
}

func (s *sortedState[E]) String() string {
	if s.len() == 0 {
		return "{}"
	}
	parts := make([]string, len(s.entries))
	for i, e := range s.entries {
		parts[i] = e.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
