package metanode

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/sm"
	"github.com/metamq/meta/sm/logpb"
)

// Storage alarms (sm/alarm.go holds the record). Every ReportInterval each
// node measures what it stores (RocksDB's SST files and memtables, the
// figure that grows with the data and its change log) against
// Config.QuotaBytes, and the free space of its data directory's
// filesystem against Config.MinFreeBytes. Past either, it raises a
// NOSPACE alarm for itself in metadata-0, through the log, so that every
// node learns it from the same record. While any NOSPACE alarm is raised,
// every node refuses a client's write that takes space with ErrNoSpace
// (NOSPACE, ResourceExhausted), before proposing it: definitely not
// applied. Reads, deletes and everything that frees space (lease revokes,
// session and will deletes, expiries, compaction) and the node's own work
// go on. The alarm stays until an admin clears it (metactl alarm disarm)
// once space is freed; a member still past its limit raises it again
// within ReportInterval. The records travel in the directory
// (state.Directory.Alarms), which every node follows whether or not it
// hosts metadata-0, and a write is refused both where it enters and on the
// leader that proposes it (env.admit), so a write forwarded from a node
// that has not heard of the alarm yet is refused too.
//
// Why the floor matters more than the quota: RocksDB must never meet a
// full disk. When it does (the floor off, or something else filling the
// disk between two measurements), the group whose write failed halts
// (sm/machine.go), a failed write of the raft log or stable store stops
// every group of the node (storage.go), and the node stays up but serves
// nothing of its own until it restarts with space. Such a failure raises
// the NOSPACE alarm as the floor does (diskFull), so that the cluster
// refuses writes with a definite error rather than run on without the
// full node's replicas; only a refusal before the disk fills keeps the
// node serving.

// ErrNoSpace: a NOSPACE alarm is raised; the write was refused before it
// was proposed.
var ErrNoSpace error = &sentinel{"metanode: NOSPACE alarm raised: writes that take space are refused until an admin clears it (metactl alarm disarm) once space is freed", metapb.ReasonNoSpace}

// takesSpace reports whether an op is a client's write that makes the
// stored data grow. Deletes, revokes, keep-alives, completions and the
// node's and controller's own operations are not refused. A transaction
// is refused whatever it holds, and so is a retained set (an empty
// payload deletes: clear retained messages with it after the alarm).
func takesSpace(op *logpb.Op) bool {
	switch op.Op.(type) {
	case *logpb.Op_Put, *logpb.Op_Cas, *logpb.Op_KvPuts, *logpb.Op_KvTxn,
		*logpb.Op_OffsetCommit, *logpb.Op_ResourceCreate, *logpb.Op_ResourceUpdate,
		*logpb.Op_SessionsPut, *logpb.Op_WillPut, *logpb.Op_WillClaim,
		*logpb.Op_RetainedSet, *logpb.Op_LeaseGrant:
		return true
	}
	return false
}

// checkSpace refuses op with ErrNoSpace while a NOSPACE alarm is raised.
func (e *env) checkSpace(op *logpb.Op) error {
	if !takesSpace(op) {
		return nil
	}
	for _, a := range e.directory().Alarms {
		if a.Alarm == sm.AlarmNoSpace {
			return fmt.Errorf("%w (member %s: %s)", ErrNoSpace, a.Member, a.Message)
		}
	}
	return nil
}

// alarmLoop measures this node's storage, raises its NOSPACE alarm when
// past a limit.
func (n *Node) alarmLoop(ctx context.Context) {
	n.quota.Store(n.cfg.QuotaBytes)
	t := time.NewTicker(n.cfg.ReportInterval)
	defer t.Stop()
	for {
		if why := n.overLimit(); why != "" && !n.alarmRaised(n.id) {
			n.log.Error("NOSPACE: storage past its limit; raising the alarm: writes that take space are refused cluster-wide until an admin clears it", "why", why)
			op := &logpb.Op{Op: &logpb.Op_AlarmSet{AlarmSet: &logpb.AlarmSet{Member: n.id, Alarm: sm.AlarmNoSpace, Active: true, Message: why}}}
			cctx, cancel := context.WithTimeout(ctx, n.cfg.ReportInterval)
			if _, err := n.Propose(cctx, metapb.MetadataGroup, op); err != nil {
				n.log.Warn("raise NOSPACE alarm", "err", err)
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// overLimit says how this node's storage is past its quota or free-space
// floor; "" when it is not.
func (n *Node) overLimit() string {
	if q := n.quota.Load(); q > 0 {
		s := n.db.Stats()
		if used := int64(s.TotalSSTBytes + s.MemTableBytes); used > q {
			return fmt.Sprintf("stores %d bytes, quota %d (--quota-bytes)", used, q)
		}
	}
	if err := n.diskFull(); err != nil {
		return fmt.Sprintf("the disk is full: %v", err)
	}
	if floor := n.cfg.MinFreeBytes; floor > 0 {
		var st unix.Statfs_t
		if err := unix.Statfs(n.cfg.DataDir, &st); err == nil {
			if free := int64(st.Bavail) * st.Bsize; free < floor {
				return fmt.Sprintf("%d bytes free on the data directory's filesystem, floor %d (--min-free-bytes)", free, floor)
			}
		}
	}
	return ""
}

// noSpaceText is how RocksDB's IO errors name a full disk (the text of
// ENOSPC; grocksdb passes errors on as text only).
const noSpaceText = "No space left on device"

// diskFull returns a storage failure of this node that a full disk
// caused (its RocksDB refusing writes, or a replica halted when it could
// not store applied entries); nil when there is none. The groups it
// stopped stay stopped until the node restarts, so until then the node
// keeps its NOSPACE alarm raised, also with the floor and quota off.
func (n *Node) diskFull() error {
	if e := n.storageErr.Load(); e != nil && strings.Contains((*e).Error(), noSpaceText) {
		return *e
	}
	for _, err := range n.Halted() {
		if strings.Contains(err.Error(), noSpaceText) {
			return err
		}
	}
	return nil
}

func (n *Node) alarmRaised(member string) bool {
	return slices.ContainsFunc(n.Directory().Alarms, func(a *logpb.AlarmSet) bool {
		return a.Alarm == sm.AlarmNoSpace && a.Member == member
	})
}

// Alarms lists the raised alarms as this node's directory holds them.
func (n *Node) Alarms() []*logpb.AlarmSet { return n.Directory().Alarms }

// DisarmAlarm clears alarm for member (every member when empty) through
// metadata-0's log and returns how many records it cleared. A member
// still past its limit raises its alarm again within ReportInterval.
func (n *Node) DisarmAlarm(ctx context.Context, alarm, member string) (uint64, error) {
	if alarm == "" {
		alarm = sm.AlarmNoSpace
	}
	res, err := n.Propose(ctx, metapb.MetadataGroup, &logpb.Op{Op: &logpb.Op_AlarmSet{AlarmSet: &logpb.AlarmSet{Alarm: alarm, Member: member}}})
	if err != nil {
		return 0, err
	}
	switch res.Code {
	case logpb.Code_CODE_OK, logpb.Code_CODE_NOT_FOUND:
		return res.Count, nil
	}
	return 0, invalidf("alarm", "%s", res.Message)
}
