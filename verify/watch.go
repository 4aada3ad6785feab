package verify

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
)

// WatchFile is the run folder's record of every watch (watch.jsonl).
const WatchFile = "watch.jsonl"

// Watch record types.
const (
	// WatchStart: the watcher calls the client's Watch (a new segment):
	// at the start of the run, and again after Watch returned (an error
	// the client does not resume from, e.g. COMPACTED).
	WatchStart = "start"
	// WatchResponse: Watch handed a response to the watcher.
	WatchResponse = "response"
	// WatchEnd: Watch returned; Err says why, Compacted if it was
	// COMPACTED, Stopped if the run ended it.
	WatchEnd = "end"
)

// Watch spaces by their names in records.
var watchSpaces = map[string]metapb.WatchSpace{
	"kv": metapb.WatchSpace_WATCH_SPACE_KV, "resources": metapb.WatchSpace_WATCH_SPACE_RESOURCES,
	"wills": metapb.WatchSpace_WATCH_SPACE_WILLS, "brokers": metapb.WatchSpace_WATCH_SPACE_BROKERS,
	"assignments": metapb.WatchSpace_WATCH_SPACE_ASSIGNMENTS,
}

// WatchRecord is one line of watch.jsonl.
//
// Every watcher of a run has an id; its records, in order, are segments:
// a start record (its name, space, request prefix and the key prefix the
// checker follows), the responses the client's Watch handed over (time
// of receipt on the run clock, the per-group revisions, whether it was a
// progress notification, the events), and an end record with the error
// Watch returned. Watchers ask for progress notifications only once an
// hour, so within a run every progress notification is the first
// response of a stream: the start of a segment, or a resume inside the
// client's Watch after a stream broke.
type WatchRecord struct {
	Watcher   int               `json:"watcher"`
	Type      string            `json:"type"`
	Time      int64             `json:"time"`
	Name      string            `json:"name,omitempty"`
	Space     string            `json:"space,omitempty"`
	Prefix    string            `json:"prefix,omitempty"`
	KeyPrefix string            `json:"key_prefix,omitempty"`
	Revisions map[string]uint64 `json:"revisions,omitempty"`
	Progress  bool              `json:"progress,omitempty"`
	Events    []WatchEvent      `json:"events,omitempty"`
	Err       string            `json:"error,omitempty"`
	Compacted bool              `json:"compacted,omitempty"`
	// Stopped: the run stopped the watcher (Watch returned because its
	// context ended), as opposed to Watch giving up by itself.
	Stopped bool `json:"stopped,omitempty"`
}

// WatchEvent is one event as a watcher received it. Key and Value depend
// on the space: KV key and value; resource name and marker (Kind set);
// broker id and "epoch/STATUS"; connector and
// "broker@broker_epoch#epoch/STATE". ModRevision is the changed item's
// mod_revision as the event carried it.
type WatchEvent struct {
	Group       string `json:"group"`
	Revision    uint64 `json:"revision"`
	Type        string `json:"type"` // put, delete
	Key         string `json:"key"`
	Value       string `json:"value,omitempty"`
	ModRevision uint64 `json:"mod_revision,omitempty"`
	Kind        string `json:"kind,omitempty"`
	Broker      string `json:"broker,omitempty"`
	BrokerEpoch uint64 `json:"broker_epoch,omitempty"`
	Epoch       uint64 `json:"epoch,omitempty"`
	Status      string `json:"status,omitempty"`
}

func brokerValue(epoch uint64, status string) string { return fmt.Sprintf("%d/%s", epoch, status) }

func assignmentValue(a AssignmentValue) string {
	return fmt.Sprintf("%s@%d#%d/%s", a.Broker, a.BrokerEpoch, a.Epoch, a.State)
}

// fromWatchEvent converts an event of space.
func fromWatchEvent(space string, ev *metapb.WatchEvent) WatchEvent {
	out := WatchEvent{Group: ev.Group, Revision: ev.Revision, Type: "put"}
	if ev.Type == metapb.WatchEvent_DELETE {
		out.Type = "delete"
	}
	switch space {
	case "kv":
		if kv := ev.Kv; kv != nil {
			out.Key, out.Value, out.ModRevision = string(kv.Key), string(kv.Value), kv.ModRevision
		}
	case "resources":
		if r := fromResource(ev.Resource); r != nil {
			out.Key, out.Kind, out.Value, out.ModRevision = r.Name, r.Kind, r.Marker, r.ModRevision
		}
	case "brokers":
		if b := ev.Broker; b != nil {
			v := fromBroker(b)
			out.Key, out.Epoch, out.Status, out.ModRevision = v.ID, v.Epoch, v.Status, v.ModRevision
			out.Value = brokerValue(v.Epoch, v.Status)
		}
	case "assignments":
		if a := fromAssignment(ev.Assignment); a != nil {
			out.Key, out.Broker, out.BrokerEpoch, out.Epoch, out.Status = a.Connector, a.Broker, a.BrokerEpoch, a.Epoch, a.State
			out.Value, out.ModRevision = assignmentValue(*a), a.ModRevision
		}
	}
	return out
}

// WatchLog is a concurrent-safe, append-only list of watch records.
type WatchLog struct {
	mu   sync.Mutex // guards recs
	recs []WatchRecord
}

// Append adds a record.
func (l *WatchLog) Append(r WatchRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
}

// Records returns a copy of the records so far.
func (l *WatchLog) Records() []WatchRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// SaveWatchRecords writes records to path as JSON lines.
func SaveWatchRecords(path string, recs []WatchRecord) error {
	return writeFile(path, func(w io.Writer) error { return writeJSONLines(w, recs) })
}

// LoadWatchRecords reads records saved by SaveWatchRecords.
func LoadWatchRecords(path string) ([]WatchRecord, error) {
	return readFile(path, func(r io.Reader) ([]WatchRecord, error) {
		return readJSONLines(r, func(r *WatchRecord) error {
			switch r.Type {
			case WatchStart, WatchResponse, WatchEnd:
				return nil
			}
			return fmt.Errorf("unknown watch record type %q", r.Type)
		})
	})
}

// watchSpec describes one watcher.
type watchSpec struct {
	Name   string
	Space  string // a key of watchSpaces
	Prefix string // the request's prefix
	// KeyPrefix: the keys (resource names, broker ids, connectors) the
	// checker follows.
	KeyPrefix string
}

// progressInterval asks for progress notifications once an hour: within
// a run, every progress notification then starts a stream.
const progressInterval = uint32(time.Hour / time.Millisecond)

// watcher runs one watch for a run and records everything it sees.
type watcher struct {
	id    int
	spec  watchSpec
	api   WatchAPI
	log   *WatchLog
	clock *Clock
	// first is closed when the first response arrived.
	first     chan struct{}
	firstOnce sync.Once

	mu sync.Mutex // guards keys
	// keys: per key, the last event seen (for waiting on fences).
	keys map[string]WatchEvent
}

func newWatcher(id int, spec watchSpec, api WatchAPI, log *WatchLog, clock *Clock) *watcher {
	return &watcher{id: id, spec: spec, api: api, log: log, clock: clock, first: make(chan struct{}), keys: map[string]WatchEvent{}}
}

// run watches until ctx ends: it calls the client's Watch, which resumes
// by itself across broken streams, and calls it again (a new segment,
// from the current revision) whenever it returns, e.g. COMPACTED.
func (w *watcher) run(ctx context.Context) {
	req := &metapb.WatchRequest{Space: watchSpaces[w.spec.Space], Prefix: []byte(w.spec.Prefix), ProgressIntervalMs: progressInterval}
	for ctx.Err() == nil {
		w.log.Append(WatchRecord{Watcher: w.id, Type: WatchStart, Time: w.clock.Now(), Name: w.spec.Name,
			Space: w.spec.Space, Prefix: w.spec.Prefix, KeyPrefix: w.spec.KeyPrefix})
		err := w.api.Watch(ctx, req, w.receive)
		end := WatchRecord{Watcher: w.id, Type: WatchEnd, Time: w.clock.Now(), Stopped: ctx.Err() != nil}
		if err != nil {
			end.Err = err.Error()
			_, _, end.Compacted = client.Compacted(err)
		}
		w.log.Append(end)
		if !Sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
}

func (w *watcher) receive(resp *metapb.WatchResponse) error {
	rec := WatchRecord{Watcher: w.id, Type: WatchResponse, Time: w.clock.Now(), Progress: resp.Progress}
	if len(resp.Revisions) > 0 {
		rec.Revisions = make(map[string]uint64, len(resp.Revisions))
		for g, r := range resp.Revisions {
			rec.Revisions[g] = r
		}
	}
	w.mu.Lock()
	for _, ev := range resp.Events {
		e := fromWatchEvent(w.spec.Space, ev)
		rec.Events = append(rec.Events, e)
		w.keys[e.Key] = e
	}
	w.mu.Unlock()
	w.log.Append(rec)
	w.firstOnce.Do(func() { close(w.first) })
	return nil
}

// saw reports whether the watcher received an event of key with value.
func (w *watcher) saw(key, value string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.keys[key]
	return ok && e.Value == value
}
