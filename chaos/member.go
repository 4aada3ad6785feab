package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify"
)

// Membership faults.
//
// A node is taken out with a forced RemoveMember (a spare an "add" fault
// added is drained first, then removed) and brought back with AddMember
// followed by a start with --join flags on an empty data directory. The
// order matters for safety: the node is killed and wiped first, AddMember
// is retried until the cluster accepts it (it refuses while any group still
// lists the old incarnation), and only then does the wiped node run. So a
// node without its log never runs while a configuration still counts it as
// a voter. The container is recreated for the join because its command
// cannot change; afterwards it keeps the join flags, which a node with a
// non-empty data directory ignores.
//
// Heal of remove-readd and wipe-readd also waits (bounded by the Heal's
// context) until the groups have settled on their replica sets again
// (waitPlaced): with the replication factor at the node count the node is
// a voter of every group again; below it, it holds what the controller
// placed on it. A group of two voters and a catching-up non-voter would
// lose quorum to the next fault and make that fault's window idle, which
// the activity checker rejects.

func (m *Nemesis) injectMember(ctx context.Context, f *verify.Fault) error {
	op := f.Params["op"]
	switch op {
	case "remove-readd", "wipe-readd":
		if len(f.Nodes) == 0 {
			return fmt.Errorf("chaos: member %s: no node", op)
		}
		n := f.Nodes[0]
		// Forced: n is a live voter of its groups, and on a cluster of RF
		// nodes nothing else could take its replicas.
		if err := m.ensureRemoved(ctx, n, verify.RemoveForced); err != nil {
			return err
		}
		m.mark(m.removed, []string{n}, true)
		if op == "remove-readd" {
			// It keeps running, outside the cluster, with clients pinned to
			// it: a removed node must not serve what it no longer knows.
			m.note(f, false, "removed %s; it keeps running outside the cluster until Heal", n)
			return nil
		}
		return m.rejoin(ctx, f, n)
	case "add":
		_, err := m.addSpare(ctx, f)
		return err
	}
	return fmt.Errorf("chaos: member: unknown op %q", op)
}

// addSpare adds a spare that is not a member yet and starts it.
func (m *Nemesis) addSpare(ctx context.Context, f *verify.Fault) (string, error) {
	spare := ""
	m.mu.Lock()
	for _, s := range m.cfg.Spares {
		if !m.added[s] {
			spare = s
			break
		}
	}
	m.mu.Unlock()
	if spare == "" {
		return "", fmt.Errorf("chaos: %s: %w: no spare node", f.Kind, verify.ErrUnsupported)
	}
	if err := m.ensureAdded(ctx, spare); err != nil {
		return spare, err
	}
	m.mark(m.added, []string{spare}, true)
	if err := m.c.Start(ctx, spare); err != nil {
		return spare, err
	}
	m.note(f, false, "added spare %s and started it", spare)
	return spare, nil
}

// retireSpares retires every spare a fault added.
func (m *Nemesis) retireSpares(ctx context.Context, f *verify.Fault) error {
	m.mu.Lock()
	added := sortedKeys(m.added)
	m.mu.Unlock()
	for _, s := range added {
		if err := m.retire(ctx, f, s); err != nil {
			return err
		}
	}
	return nil
}

// injectScale grows the pool by the spare ("grow"), or replaces
// f.Nodes[0], killed for good and removed, by it ("replace"): the
// controller re-creates the dead node's replicas on the others.
func (m *Nemesis) injectScale(ctx context.Context, f *verify.Fault) error {
	switch op := f.Params["op"]; op {
	case "grow":
		_, err := m.addSpare(ctx, f)
		return err
	case "replace":
		if len(f.Nodes) == 0 {
			return fmt.Errorf("chaos: scale replace: no node")
		}
		n := f.Nodes[0]
		if _, err := m.addSpare(ctx, f); err != nil {
			return err
		}
		m.mark(m.killed, []string{n}, true)
		if err := m.c.Kill(ctx, n); err != nil {
			return err
		}
		// Forced: n is neither drained nor yet past the dead-node timeout.
		if err := m.ensureRemoved(ctx, n, verify.RemoveForced); err != nil {
			return err
		}
		m.mark(m.removed, []string{n}, true)
		m.note(f, false, "%s killed for good and removed: its replicas are re-created on the others", n)
		return nil
	}
	return fmt.Errorf("chaos: scale: %w: op %q", verify.ErrUnsupported, f.Params["op"])
}

// healScale retires the spare: for "grow" once the controller has given
// it replicas (retireFilled); for "replace" after bringing the dead node
// back as a new member (once no group lists it any more), then waits
// until the groups have settled on their replica sets (waitPlaced).
func (m *Nemesis) healScale(ctx context.Context, f *verify.Fault) error {
	switch op := f.Params["op"]; op {
	case "grow":
		return m.retireFilled(ctx, f)
	case "replace":
		if err := m.rejoin(ctx, f, f.Nodes[0]); err != nil {
			return err
		}
		if err := m.retireSpares(ctx, f); err != nil {
			return err
		}
		return m.waitPlaced(ctx, f, f.Nodes[0])
	default:
		return fmt.Errorf("chaos: scale: %w: op %q", verify.ErrUnsupported, op)
	}
}

// retireFilled heals a spare's joining ("grow", member "add"): it lets
// the controller fill every added spare (verify.WaitFilled), so that the
// drain that follows moves replicas and leaderships off a node that holds
// some, then retires them.
func (m *Nemesis) retireFilled(ctx context.Context, f *verify.Fault) error {
	m.mu.Lock()
	added := sortedKeys(m.added)
	m.mu.Unlock()
	for _, s := range added {
		start := time.Now()
		if err := verify.WaitFilled(ctx, m.adm, s, m.cfg.OpTimeout); err != nil {
			return fmt.Errorf("chaos: %w", err)
		}
		m.note(f, false, "the controller filled %s in %s", s, time.Since(start).Round(time.Millisecond))
	}
	return m.retireSpares(ctx, f)
}

// injectMove moves f.Nodes[0]'s replica of f.Params["group"] to a
// member of the cluster that holds none (drawn with f.Pick among them,
// in sorted order: the replication factor is below the node count), or,
// when every member holds one, to a spare it adds first. Heal retires
// the spare if there is one (drained, the replica moves back); a move to
// a member has nothing to undo, and the controller may move the replica
// again as it balances.
func (m *Nemesis) injectMove(ctx context.Context, f *verify.Fault) error {
	if len(f.Nodes) == 0 {
		return fmt.Errorf("chaos: move: no node")
	}
	group := f.Params["group"]
	to, err := m.moveTarget(ctx, f, group)
	if err != nil {
		return err
	}
	if to == "" {
		if to, err = m.addSpare(ctx, f); err != nil {
			return err
		}
	}
	start := time.Now()
	replicas, err := verify.MoveReplica(ctx, m.adm, group, f.Nodes[0], to, m.cfg.OpTimeout)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	m.note(f, false, "moved %s's replica of %s to %s in %s: replicas %v", f.Nodes[0], group, to, time.Since(start).Round(time.Millisecond), replicas)
	return nil
}

// moveTarget reads group's replicas from the directory and returns the
// member that is to take f.Nodes[0]'s: one of the cluster's nodes that
// holds none and that no fault has stopped or removed, chosen by f.Pick
// among them in sorted order; "" when there is none (every member holds
// a replica: the replication factor is the node count).
func (m *Nemesis) moveTarget(ctx context.Context, f *verify.Fault, group string) (string, error) {
	var replicas []string
	err := m.retry(ctx, "read the replicas of "+group, func(ctx context.Context) (bool, error) {
		gs, err := m.adm.ListGroups(ctx)
		if err != nil {
			return false, err
		}
		var listed bool
		if replicas, listed = verify.GroupReplicas(gs, group); !listed {
			return false, fmt.Errorf("no group %q in the directory", group)
		}
		return true, nil
	})
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return verify.MoveTarget(m.nodes, replicas, func(n string) bool {
		return !m.killed[n] && !m.removed[n] && !m.paused[n]
	}, f.Pick), nil
}

func (m *Nemesis) healMember(ctx context.Context, f *verify.Fault) error {
	switch f.Params["op"] {
	case "remove-readd":
		if err := m.rejoin(ctx, f, f.Nodes[0]); err != nil {
			return err
		}
		return m.waitPlaced(ctx, f, f.Nodes[0])
	case "wipe-readd":
		return m.waitPlaced(ctx, f, f.Nodes[0])
	case "add":
		return m.retireFilled(ctx, f)
	}
	return fmt.Errorf("chaos: member: unknown op %q", f.Params["op"])
}

// rejoin brings a removed node back as a new incarnation: kill, wipe,
// AddMember, recreate with join flags, start.
func (m *Nemesis) rejoin(ctx context.Context, f *verify.Fault, n string) error {
	if m.cfg.JoinArgs == nil {
		return fmt.Errorf("chaos: rejoin %s: no JoinArgs", n)
	}
	start := time.Now()
	m.mark(m.killed, []string{n}, true)
	if err := m.c.Kill(ctx, n); err != nil {
		return err
	}
	if err := m.c.Wipe(ctx, n); err != nil {
		return err
	}
	if err := m.ensureAdded(ctx, n); err != nil {
		return err
	}
	if err := m.c.Recreate(ctx, n, m.cfg.JoinArgs(n)); err != nil {
		return err
	}
	if err := m.c.Start(ctx, n); err != nil {
		return err
	}
	m.mark(m.killed, []string{n}, false)
	m.mark(m.removed, []string{n}, false)
	m.note(f, false, "%s wiped, re-added and joined in %s", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// retire takes a spare out again: drain, RemoveMember, kill, wipe (so
// that it can be added afresh later).
func (m *Nemesis) retire(ctx context.Context, f *verify.Fault, spare string) error {
	if err := m.ensureRemoved(ctx, spare, verify.RemoveDrained); err != nil {
		return err
	}
	if err := m.c.Kill(ctx, spare); err != nil {
		return err
	}
	if err := m.c.Wipe(ctx, spare); err != nil {
		return err
	}
	m.mark(m.added, []string{spare}, false)
	m.note(f, false, "removed spare %s, stopped and wiped it", spare)
	return nil
}

// retry calls fn, each attempt bounded by OpTimeout, until it reports
// done or ctx ends.
func (m *Nemesis) retry(ctx context.Context, what string, fn func(ctx context.Context) (bool, error)) error {
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
		done, err := fn(actx)
		cancel()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		if !verify.Sleep(ctx, 250*time.Millisecond) {
			return fmt.Errorf("chaos: %s: %w (last error: %v)", what, ctx.Err(), last)
		}
	}
}

func listed(ms *metapb.MembersResponse, id string) bool {
	return slices.ContainsFunc(ms.GetMembers(), func(m *metapb.Member) bool { return m.Id == id })
}

// ensureRemoved takes n out of the member list by removal, or finds it
// removed (see verify.TakeOut).
func (m *Nemesis) ensureRemoved(ctx context.Context, n string, removal verify.Removal) error {
	if _, err := verify.TakeOut(ctx, m.adm, n, removal, m.cfg.OpTimeout); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}

// ensureAdded adds n to the member list, or finds it there. The cluster
// refuses while some group still holds n's previous incarnation; that is
// retried too.
func (m *Nemesis) ensureAdded(ctx context.Context, n string) error {
	addr, err := m.c.PeerAddr(n)
	if err != nil {
		return err
	}
	return m.retry(ctx, "add member "+n, func(ctx context.Context) (bool, error) {
		ms, err := m.adm.Members(ctx)
		if err != nil {
			return false, err
		}
		if listed(ms, n) {
			return true, nil
		}
		_, err = m.adm.AddMember(ctx, n, addr)
		return err == nil, err
	})
}

// waitPlaced waits until the cluster has settled after n came back:
// the directory passes verify.PlacementProblems against the members the
// nemesis expects (the cluster's nodes it has not removed, and the
// spares it added), and every group's leader's configuration is the
// group's replica set there, all voters. With the replication factor at
// the node count that makes n a voter of every group; below it, n holds
// what the controller placed on it. Either way no group is left with a
// catching-up non-voter and fewer voters than its replication factor,
// which would lose its quorum to the next fault and leave that fault's
// window idle (the activity checker rejects that).
func (m *Nemesis) waitPlaced(ctx context.Context, f *verify.Fault, n string) error {
	start := time.Now()
	err := m.retry(ctx, "wait for the groups to settle after "+n+" came back", func(ctx context.Context) (bool, error) {
		gs, err := m.adm.ListGroups(ctx)
		if err != nil {
			return false, err
		}
		ns, err := m.adm.ListNodes(ctx)
		if err != nil {
			return false, err
		}
		if p := verify.PlacementProblems(gs, ns, m.expected()); len(p) > 0 {
			return false, errors.New(strings.Join(p, "; "))
		}
		leaders := m.leaders(ctx)
		for _, g := range gs.Groups {
			if err := configured(g, leaders[g.Group]); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err == nil {
		m.note(f, false, "the groups settled on their replicas after %s came back, in %s", n, time.Since(start).Round(time.Millisecond))
	}
	return err
}

// expected returns the members the nemesis expects now, sorted: the
// cluster's nodes it has not removed, and the spares it added.
func (m *Nemesis) expected() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, n := range m.nodes {
		if !m.removed[n] {
			out = append(out, n)
		}
	}
	out = append(out, sortedKeys(m.added)...)
	slices.Sort(out)
	return out
}

// configured says whether leader, the status of g's leader (nil if no
// node of the cluster was seen leading it: a spare may, and the
// directory's own leader check stands), has exactly g's replicas as the
// voters of its configuration and nothing else.
func configured(g *metapb.GroupInfo, leader *metapb.GroupStatus) error {
	if leader == nil {
		return nil
	}
	var replicas, voters []string
	for _, r := range g.Replicas {
		replicas = append(replicas, r.Node)
	}
	for _, mb := range leader.Members {
		if !mb.Voter {
			return fmt.Errorf("%s is not a voter of %s yet", mb.Id, g.Group)
		}
		voters = append(voters, mb.Id)
	}
	slices.Sort(replicas)
	slices.Sort(voters)
	if !slices.Equal(voters, replicas) {
		return fmt.Errorf("%s's leader %s has voters %v, the directory places it on %v", g.Group, leader.LeaderId, voters, replicas)
	}
	return nil
}

// checkMembers verifies that the member list is the cluster's node set,
// as verify's contract requires at the end of a run; a difference is a
// Problem note.
func (m *Nemesis) checkMembers(ctx context.Context) error {
	var got []string
	err := m.retry(ctx, "read the member list", func(ctx context.Context) (bool, error) {
		ms, err := m.adm.Members(ctx)
		if err != nil {
			return false, err
		}
		got = got[:0]
		for _, mb := range ms.Members {
			got = append(got, mb.Id)
		}
		slices.Sort(got)
		return true, nil
	})
	if err != nil {
		m.note(nil, true, "member list not readable at the end of the schedule: %v", err)
		return err
	}
	if !slices.Equal(got, m.nodes) {
		m.note(nil, true, "member list at the end of the schedule is %v, want %v", got, m.nodes)
		return fmt.Errorf("chaos: member list %v, want %v", got, m.nodes)
	}
	return nil
}
