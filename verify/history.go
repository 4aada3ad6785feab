package verify

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// ErrHistory reports a history file that cannot be read back.
var ErrHistory = errors.New("verify: bad history")

// OpKind names an API call recorded in a history.
type OpKind string

// The recorded calls. Each one maps to one method of the public client.
const (
	OpPut         OpKind = "put"
	OpGet         OpKind = "get"
	OpDelete      OpKind = "delete"
	OpCAS         OpKind = "cas"
	OpList        OpKind = "list"
	OpCommit      OpKind = "commit"
	OpFetch       OpKind = "fetch"
	OpDeleteGroup OpKind = "delete-group"
	OpMultiPut    OpKind = "multi-put"
	OpMultiGet    OpKind = "multi-get"
	OpTxn         OpKind = "txn"
)

// IsWrite reports whether the call may change state. Only writes can have
// an unknown outcome: a read that fails changed nothing and is simply
// dropped by the checkers.
func (k OpKind) IsWrite() bool {
	switch k {
	case OpPut, OpDelete, OpCAS, OpCommit, OpDeleteGroup, OpMultiPut, OpTxn:
		return true
	}
	return false
}

// Outcome classifies how a call ended, from the caller's point of view.
type Outcome string

const (
	// OutcomeOK: the call returned a response.
	OutcomeOK Outcome = "ok"
	// OutcomeFail: the call definitely changed nothing (the server or the
	// client said so before anything was applied). Checkers drop it.
	OutcomeFail Outcome = "fail"
	// OutcomeUnknown: a write that may or may not have been applied.
	// Checkers treat it as possibly applied at any time after its call,
	// including never.
	OutcomeUnknown Outcome = "unknown"
)

// OffsetCommit is one entry of a commit batch.
type OffsetCommit struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Metadata  string `json:"metadata,omitempty"`
}

// TopicPartition names one partition of one consumer group.
type TopicPartition struct {
	Group     string `json:"group"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

// String renders "group/topic/partition", the name checkers report.
func (tp TopicPartition) String() string {
	return fmt.Sprintf("%s/%s/%d", tp.Group, tp.Topic, tp.Partition)
}

// TP returns the partition an OffsetCommit writes.
func (c OffsetCommit) TP() TopicPartition {
	return TopicPartition{Group: c.Group, Topic: c.Topic, Partition: c.Partition}
}

// OffsetValue is one fetched offset.
type OffsetValue struct {
	TopicPartition
	Found       bool   `json:"found"`
	Offset      int64  `json:"offset"`
	Metadata    string `json:"metadata,omitempty"`
	ModRevision uint64 `json:"mod_revision,omitempty"`
}

// KV is a key-value pair as a response returned it.
type KV struct {
	Key            string `json:"key"`
	Value          string `json:"value,omitempty"`
	CreateRevision uint64 `json:"create_revision,omitempty"`
	ModRevision    uint64 `json:"mod_revision,omitempty"`
	Version        uint64 `json:"version,omitempty"`
}

// Input is the request of a recorded call. Only the fields of its kind are
// set.
type Input struct {
	// Key of put, get, delete and cas.
	Key string `json:"key,omitempty"`
	// Value written by put, and the new value of cas.
	Value string `json:"value,omitempty"`
	// Expected value of cas, compared only when ExpectAbsent is false.
	Expected string `json:"expected,omitempty"`
	// ExpectAbsent: cas succeeds only if the key does not exist.
	ExpectAbsent bool `json:"expect_absent,omitempty"`
	// PrevKV: put and delete asked for the previous pair.
	PrevKV bool `json:"prev_kv,omitempty"`
	// List parameters.
	Prefix     string `json:"prefix,omitempty"`
	StartAfter string `json:"start_after,omitempty"`
	Limit      uint32 `json:"limit,omitempty"`
	KeysOnly   bool   `json:"keys_only,omitempty"`
	// Stale: a get, list or fetch with STALE consistency. Such reads may
	// lag by contract, so the linearizability checkers skip them.
	Stale bool `json:"stale,omitempty"`
	// Offsets of a commit batch.
	Offsets []OffsetCommit `json:"offsets,omitempty"`
	// Partitions of a fetch.
	Partitions []TopicPartition `json:"partitions,omitempty"`
	// Group of a delete-group.
	Group string `json:"group,omitempty"`
	// Puts of a multi-put (key and value each).
	Puts []KV `json:"puts,omitempty"`
	// Keys of a multi-get, in request order.
	Keys []string `json:"keys,omitempty"`
	// Txn is a transaction's compares and branches.
	Txn *TxnInput `json:"txn,omitempty"`
}

// TxnInput is a recorded transaction: compares of values or absence (the
// models know no others), and each branch's writes.
type TxnInput struct {
	Compares []TxnCompare `json:"compares,omitempty"`
	Success  []TxnWrite   `json:"success,omitempty"`
	Failure  []TxnWrite   `json:"failure,omitempty"`
}

// TxnCompare holds when Key is absent (Absent) or holds Value.
type TxnCompare struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Absent bool   `json:"absent,omitempty"`
}

// TxnWrite puts Value at Key, or deletes Key.
type TxnWrite struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
}

// PutPart is one data group's part of a multi-put: its puts (indexes into
// Input.Puts), applied atomically, and what became of them.
type PutPart struct {
	Group string `json:"group"`
	// Revision is the group's revision after the part (0: unknown); all
	// of its puts carry it.
	Revision uint64  `json:"revision,omitempty"`
	Indexes  []int   `json:"indexes"`
	Outcome  Outcome `json:"outcome"`
}

// Output is the response of a call whose outcome is ok.
type Output struct {
	// Node that served the call and the group's revision, from the
	// response header when there is one.
	Node     string `json:"node,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
	// Group that served the call and the version of its own ownership
	// of the call's key (0: unknown), from the response header: what the
	// ownership checker judges.
	Group        string `json:"group,omitempty"`
	RangeVersion uint64 `json:"range_version,omitempty"`
	// KV is the key read by get (nil: absent), the previous pair of put and
	// delete (when asked for; nil: did not exist) and the current pair
	// before a cas (nil: did not exist).
	KV *KV `json:"kv,omitempty"`
	// Deleted: delete found the key.
	Deleted bool `json:"deleted,omitempty"`
	// Succeeded: the cas swapped.
	Succeeded bool `json:"succeeded,omitempty"`
	// One page of a list; a multi-get's keys in request order (a key
	// that does not exist with Version 0; Group, Node and Revision are
	// set only when one group answered all of them).
	KVs []KV `json:"kvs,omitempty"`
	// Parts of a multi-put (absent: the parts are not known, and each
	// put counts as a write of its own with the op's outcome).
	Parts          []PutPart `json:"parts,omitempty"`
	More           bool      `json:"more,omitempty"`
	NextStartAfter string    `json:"next_start_after,omitempty"`
	// Fetched offsets, in request order.
	Offsets []OffsetValue `json:"offsets,omitempty"`
	// Revisions of a commit, in request order.
	Revisions []uint64 `json:"revisions,omitempty"`
	// Count of partitions a delete-group removed.
	Count uint64 `json:"count,omitempty"`
}

// Op is one recorded call: the unit of a history.
//
// Times are nanoseconds on one monotonic clock shared by every client of a
// run (Clock), so that ops of different clients can be ordered. Call is
// taken just before the request is sent and Return just after the response
// (or error) arrives; the real call happened inside [Call, Return].
//
// Client is the porcupine client id: one client id never has two ops
// outstanding. A session that sees an unknown outcome continues under a new
// client id, because its unknown op stays open forever. Process is the
// worker (session) that issued the op and does not change.
type Op struct {
	// Index is the op's position in its history.
	Index    int     `json:"index"`
	Client   int     `json:"client"`
	Process  int     `json:"process"`
	Kind     OpKind  `json:"kind"`
	Input    Input   `json:"input"`
	Output   *Output `json:"output,omitempty"`
	Call     int64   `json:"call"`
	Return   int64   `json:"return"`
	Outcome  Outcome `json:"outcome"`
	Endpoint string  `json:"endpoint,omitempty"`
	Err      string  `json:"error,omitempty"`
	// Final marks the reads issued after every fault healed (FinalReads).
	Final bool `json:"final,omitempty"`
}

// Clock is a run-wide monotonic clock. Now is the time since the clock was
// made, measured with Go's monotonic clock reading, so wall-clock steps do
// not reorder ops.
type Clock struct{ base time.Time }

// NewClock starts a clock at zero.
func NewClock() *Clock { return &Clock{base: time.Now()} }

// Now returns nanoseconds since the clock started.
func (c *Clock) Now() int64 { return int64(time.Since(c.base)) }

// Since returns the run time elapsed since the clock started.
func (c *Clock) Since() time.Duration { return time.Since(c.base) }

// Base returns the wall-clock time of run time zero.
func (c *Clock) Base() time.Time { return c.base }

// History is a concurrent-safe, append-only list of ops.
type History struct{ opLog[Op] }

func (op Op) numbered(i int) Op { op.Index = i; return op }

var _ = Op.numbered // used through opLog's type constraint

// opLog is a concurrent-safe, append-only list of ops that number
// themselves in recording order (History, BrokerHistory).
type opLog[T interface{ numbered(int) T }] struct {
	mu  sync.Mutex // guards ops
	ops []T
}

// Append adds op, numbering it, and returns the numbered op.
func (h *opLog[T]) Append(op T) T {
	h.mu.Lock()
	defer h.mu.Unlock()
	op = op.numbered(len(h.ops))
	h.ops = append(h.ops, op)
	return op
}

// Ops returns a copy of the ops recorded so far, in recording order.
func (h *opLog[T]) Ops() []T {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Len returns the number of ops recorded so far.
func (h *opLog[T]) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// WriteHistory writes ops as JSON lines, one Op per line, in order.
//
// The format is the contract between a run and an offline re-check: every
// line is one JSON object with the fields of Op (index, client, process,
// kind, input, output, call, return, outcome, endpoint, error, final), times
// in nanoseconds on the run clock. Keys and values are strings; workloads
// only write ASCII, so they round-trip exactly.
func WriteHistory(w io.Writer, ops []Op) error { return writeJSONLines(w, ops) }

// ReadHistory reads JSON lines written by WriteHistory. Blank lines are
// skipped; anything else that does not parse is an error naming the line.
func ReadHistory(r io.Reader) ([]Op, error) {
	return readJSONLines(r, func(op *Op) error { return op.validate() })
}

func (op *Op) validate() error {
	switch op.Kind {
	case OpPut, OpGet, OpDelete, OpCAS, OpList, OpCommit, OpFetch, OpDeleteGroup:
	case OpTxn:
		if op.Input.Txn == nil || len(op.Input.Txn.keys()) == 0 {
			return fmt.Errorf("op %d: txn without compares or writes", op.Index)
		}
	case OpMultiPut, OpMultiGet:
	default:
		return fmt.Errorf("unknown kind %q", op.Kind)
	}
	return checkRecorded(op.Index, op.Outcome, op.Output != nil, op.Call, op.Return)
}

// checkRecorded checks what every recorded op must satisfy: a known
// outcome, an output when it is ok, and a return no earlier than its
// call.
func checkRecorded(index int, outcome Outcome, output bool, call, ret int64) error {
	switch outcome {
	case OutcomeOK:
		if !output {
			return fmt.Errorf("op %d: outcome ok without output", index)
		}
	case OutcomeFail, OutcomeUnknown:
	default:
		return fmt.Errorf("op %d: unknown outcome %q", index, outcome)
	}
	if ret < call {
		return fmt.Errorf("op %d: return %d before call %d", index, ret, call)
	}
	return nil
}

// SaveHistory writes ops to path as JSON lines.
func SaveHistory(path string, ops []Op) error {
	return writeFile(path, func(w io.Writer) error { return WriteHistory(w, ops) })
}

// LoadHistory reads a history saved by SaveHistory.
func LoadHistory(path string) ([]Op, error) { return readFile(path, ReadHistory) }

// readFile opens path and reads it with read; a read error names the
// path.
func readFile[T any](path string, read func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	v, err := read(f)
	if err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// writeFile writes through a temporary file and renames it into place, so
// a reader never sees half a file.
func writeFile(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
