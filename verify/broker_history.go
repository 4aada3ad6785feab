package verify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"slices"
)

// BrokerFile is the run folder's record of the broker-facing API calls
// (sessions, metadata resources, controller), next to history.jsonl.
const BrokerFile = "broker.jsonl"

// BrokerOpKind names a call of the broker-facing API (or a pseudo-op of a
// simulated broker) recorded in broker.jsonl.
type BrokerOpKind string

// The recorded broker-facing calls. Each one maps to one method of the
// public client, except OpSilence.
const (
	OpSessionPut      BrokerOpKind = "session-put"
	OpSessionDelete   BrokerOpKind = "session-delete"
	OpSessionGet      BrokerOpKind = "session-get"
	OpSessionList     BrokerOpKind = "session-list"
	OpResourceCreate  BrokerOpKind = "resource-create"
	OpResourceUpdate  BrokerOpKind = "resource-update"
	OpResourceDelete  BrokerOpKind = "resource-delete"
	OpResourceGet     BrokerOpKind = "resource-get"
	OpRegister        BrokerOpKind = "broker-register"
	OpHeartbeat       BrokerOpKind = "broker-heartbeat"
	OpReport          BrokerOpKind = "connector-report"
	OpListBrokers     BrokerOpKind = "list-brokers"
	OpListAssignments BrokerOpKind = "list-assignments"
	// OpSilence is not a call: a simulated broker sent nothing (no
	// heartbeat, no report) from Call to Return, on purpose.
	OpSilence BrokerOpKind = "broker-silence"
)

var brokerOpKinds = []BrokerOpKind{OpSessionPut, OpSessionDelete, OpSessionGet, OpSessionList, OpResourceCreate,
	OpResourceUpdate, OpResourceDelete, OpResourceGet, OpRegister, OpHeartbeat, OpReport, OpListBrokers,
	OpListAssignments, OpSilence}

// IsWrite reports whether the call may change state (and so may end with
// an unknown outcome). Heartbeats count as writes: the client routes them
// like writes and a heartbeat can change a broker's status.
func (k BrokerOpKind) IsWrite() bool {
	switch k {
	case OpSessionPut, OpSessionDelete, OpResourceCreate, OpResourceUpdate, OpResourceDelete,
		OpRegister, OpHeartbeat, OpReport:
		return true
	}
	return false
}

// SessionValue is an MQTT session as a request wrote it or a response
// returned it. State is the opaque broker state, which the workload makes
// unique per write so that a read names the write it saw.
type SessionValue struct {
	ClientID       string `json:"client_id"`
	BrokerID       string `json:"broker_id,omitempty"`
	Connected      bool   `json:"connected,omitempty"`
	Expiry         uint32 `json:"expiry,omitempty"`
	State          string `json:"state,omitempty"`
	CreateRevision uint64 `json:"create_revision,omitempty"`
	ModRevision    uint64 `json:"mod_revision,omitempty"`
	Version        uint64 `json:"version,omitempty"`
}

// ResourceValue is a metadata resource. Marker is the spec's config["v"],
// unique per write (create or update) of the workloads; Desired is a
// connector's desired state ("RUNNING", "STOPPED", ...).
type ResourceValue struct {
	Kind           string `json:"kind"`
	Name           string `json:"name"`
	Marker         string `json:"marker,omitempty"`
	Desired        string `json:"desired,omitempty"`
	CreateRevision uint64 `json:"create_revision,omitempty"`
	ModRevision    uint64 `json:"mod_revision,omitempty"`
	Version        uint64 `json:"version,omitempty"`
}

// Key names the resource: "kind/name".
func (r ResourceValue) Key() string { return r.Kind + "/" + r.Name }

// BrokerValue is a broker's registration as ListBrokers returned it.
type BrokerValue struct {
	ID          string `json:"id"`
	Epoch       uint64 `json:"epoch"`
	Status      string `json:"status"` // ALIVE, DOWN
	Connectors  uint32 `json:"connectors,omitempty"`
	ModRevision uint64 `json:"mod_revision,omitempty"`
}

// AssignmentValue is a connector assignment. Broker is empty when the
// connector is not assigned.
type AssignmentValue struct {
	Connector   string `json:"connector"`
	Broker      string `json:"broker,omitempty"`
	BrokerEpoch uint64 `json:"broker_epoch,omitempty"`
	Epoch       uint64 `json:"epoch"`
	State       string `json:"state,omitempty"` // ASSIGNED, RUNNING, ...
	ModRevision uint64 `json:"mod_revision,omitempty"`
}

// BrokerInput is the request of a recorded broker-facing call; only the
// fields of its kind are set.
type BrokerInput struct {
	// Sessions written by session-put.
	Sessions []SessionValue `json:"sessions,omitempty"`
	// ClientIDs of session-delete; ClientID of session-get.
	ClientIDs []string `json:"client_ids,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	// session-list page parameters.
	StartAfter string `json:"start_after,omitempty"`
	Limit      uint32 `json:"limit,omitempty"`
	// Resource created or updated (resource-create, resource-update), or
	// named (kind and name only: resource-get, resource-delete).
	Resource         *ResourceValue `json:"resource,omitempty"`
	ExpectedRevision uint64         `json:"expected_revision,omitempty"`
	// Controller calls: the broker, its epoch (heartbeat, report: the
	// assignment epoch), the connector and reported state (report). A
	// list-assignments of one broker sets BrokerID.
	BrokerID  string `json:"broker_id,omitempty"`
	Epoch     uint64 `json:"epoch,omitempty"`
	Connector string `json:"connector,omitempty"`
	State     string `json:"state,omitempty"`
	// Stale: the report deliberately names an epoch the broker knows is
	// no longer current (the controller checker wants it rejected).
	Stale bool `json:"stale,omitempty"`
}

// BrokerOutput is the response of a call whose outcome is ok.
type BrokerOutput struct {
	// Revision: of a resource delete, or the metadata group's revision at
	// a list-brokers / list-assignments / resource-get read.
	Revision uint64 `json:"revision,omitempty"`
	// session-put: the revision that applied each session, in request
	// order, and the number of data groups touched.
	Revisions []uint64 `json:"revisions,omitempty"`
	Groups    uint32   `json:"groups,omitempty"`
	// session-delete: whether each session existed, in request order.
	Deleted []bool `json:"deleted,omitempty"`
	// session-get (nil: none) and one session-list page.
	Session        *SessionValue  `json:"session,omitempty"`
	Sessions       []SessionValue `json:"sessions,omitempty"`
	More           bool           `json:"more,omitempty"`
	NextStartAfter string         `json:"next_start_after,omitempty"`
	// Resource after create/update, read by get (nil: not found), or the
	// last state deleted.
	Resource *ResourceValue `json:"resource,omitempty"`
	// broker-register: the new epoch and the timing the broker must keep.
	Epoch       uint64 `json:"epoch,omitempty"`
	HeartbeatMs uint32 `json:"heartbeat_ms,omitempty"`
	TimeoutMs   uint32 `json:"timeout_ms,omitempty"`
	// broker-heartbeat: the broker's status.
	Status string `json:"status,omitempty"`
	// connector-report: the assignment after the report.
	Assignment  *AssignmentValue  `json:"assignment,omitempty"`
	Brokers     []BrokerValue     `json:"brokers,omitempty"`
	Assignments []AssignmentValue `json:"assignments,omitempty"`
}

// BrokerOp is one recorded broker-facing call, the unit of broker.jsonl.
// It has the shape of Op (same clock, client ids, process ids and outcome
// rules; see Op) with the inputs and outputs of the broker-facing API.
// Code and Reason are the gRPC code and meta ErrorInfo reason of an error,
// when it had them (e.g. FailedPrecondition / STALE_EPOCH for a rejected
// report).
type BrokerOp struct {
	Index    int           `json:"index"`
	Client   int           `json:"client"`
	Process  int           `json:"process"`
	Kind     BrokerOpKind  `json:"kind"`
	Input    BrokerInput   `json:"input"`
	Output   *BrokerOutput `json:"output,omitempty"`
	Call     int64         `json:"call"`
	Return   int64         `json:"return"`
	Outcome  Outcome       `json:"outcome"`
	Endpoint string        `json:"endpoint,omitempty"`
	Err      string        `json:"error,omitempty"`
	Code     string        `json:"code,omitempty"`
	Reason   string        `json:"reason,omitempty"`
	// Final marks calls made after the workload stopped and every fault
	// healed (final reads, fences, the controller's settling reads).
	Final bool `json:"final,omitempty"`
	// Abandoned marks a call the harness itself cut short (its context
	// ended: the run stopped), not the cluster: its outcome is unknown,
	// but it says nothing of the cluster's availability.
	Abandoned bool `json:"abandoned,omitempty"`
}

func (op *BrokerOp) validate() error {
	if !slices.Contains(brokerOpKinds, op.Kind) {
		return fmt.Errorf("unknown kind %q", op.Kind)
	}
	return checkRecorded(op.Index, op.Outcome, op.Output != nil, op.Call, op.Return)
}

// okBrokerOps yields the broker ops of bops that succeeded, in order, each
// with the text that names it as the source of an observation ("broker op 7
// list_brokers").
func okBrokerOps(bops []BrokerOp) iter.Seq2[*BrokerOp, string] {
	return func(yield func(*BrokerOp, string) bool) {
		for i := range bops {
			op := &bops[i]
			if op.Outcome == OutcomeOK && !yield(op, fmt.Sprintf("broker op %d %s", op.Index, op.Kind)) {
				return
			}
		}
	}
}

// BrokerHistory is a concurrent-safe, append-only list of broker ops.
type BrokerHistory struct{ opLog[BrokerOp] }

func (op BrokerOp) numbered(i int) BrokerOp { op.Index = i; return op }

var _ = BrokerOp.numbered // used through opLog's type constraint

// WriteBrokerOps writes ops as JSON lines, one BrokerOp per line, in
// order. Like history.jsonl this is the contract between a run and an
// offline re-check: every field of BrokerOp, times in nanoseconds on the
// run clock.
func WriteBrokerOps(w io.Writer, ops []BrokerOp) error {
	return writeJSONLines(w, ops)
}

// ReadBrokerOps reads JSON lines written by WriteBrokerOps.
func ReadBrokerOps(r io.Reader) ([]BrokerOp, error) {
	return readJSONLines(r, func(op *BrokerOp) error { return op.validate() })
}

// SaveBrokerOps writes ops to path.
func SaveBrokerOps(path string, ops []BrokerOp) error {
	return writeFile(path, func(w io.Writer) error { return WriteBrokerOps(w, ops) })
}

// LoadBrokerOps reads ops saved by SaveBrokerOps.
func LoadBrokerOps(path string) ([]BrokerOp, error) { return readFile(path, ReadBrokerOps) }

func writeJSONLines[T any](w io.Writer, items []T) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range items {
		if err := enc.Encode(&items[i]); err != nil {
			return fmt.Errorf("verify: write line %d: %w", i+1, err)
		}
	}
	return bw.Flush()
}

func readJSONLines[T any](r io.Reader, validate func(*T) error) ([]T, error) {
	var out []T
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrHistory, line, err)
		}
		if validate != nil {
			if err := validate(&v); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrHistory, line, err)
			}
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHistory, err)
	}
	return out, nil
}
