package verify

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/metamq/meta/rpc/client"
	"github.com/metamq/meta/rpc/metapb"
	"github.com/metamq/meta/verify/poll"
)

// MemberAdmin is the part of the public client that takes a member out of
// the cluster. *client.Client is one.
type MemberAdmin interface {
	Members(ctx context.Context) (*metapb.MembersResponse, error)
	RemoveMember(ctx context.Context, id string) (*metapb.RemoveMemberResponse, error)
	ForceRemoveMember(ctx context.Context, id string) (*metapb.RemoveMemberResponse, error)
	DrainMember(ctx context.Context, id string, undo bool) (*metapb.DrainMemberResponse, error)
	ListNodes(ctx context.Context) (*metapb.ListNodesResponse, error)
}

var _ MemberAdmin = (*client.Client)(nil)

// Removal is how a member fault takes a live member out.
type Removal int

const (
	// RemoveForced removes the member whatever it still holds (its
	// replicas are re-created elsewhere, or the groups shrink): the
	// remove-readd and wipe-readd faults, a live replica-holding voter
	// taken out under load. On a cluster of RF nodes nothing else could
	// take its replicas, so a drain could never finish.
	RemoveForced Removal = iota
	// RemoveDrained drains the member first (every replica and
	// leadership moved off it) and removes it once it holds nothing: the
	// operator's order, used to retire the spare an "add" fault added.
	RemoveDrained
)

// TakeOut removes member id from the member list by removal, or finds it
// already out. Each call is bounded by opTimeout and retried until ctx
// ends; a removal whose outcome is unknown is simply asked again, the
// member list says whether it took. slow counts calls that failed
// although the member had left the list (an unknown outcome, or a call
// that timed out waiting for the configurations).
func TakeOut(ctx context.Context, adm MemberAdmin, id string, removal Removal, opTimeout time.Duration) (slow int, err error) {
	listed := func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		ms, err := adm.Members(cctx)
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(ms.GetMembers(), func(m *metapb.Member) bool { return m.Id == id }), nil
	}
	// whileListed polls step while id is a member.
	whileListed := func(step func() error) error {
		return poll.Until(ctx, func() error {
			in, err := listed()
			if err != nil || !in {
				return err
			}
			return step()
		})
	}
	if removal == RemoveDrained {
		if err := whileListed(drainStep(ctx, adm, id, opTimeout)); err != nil {
			return 0, err
		}
	}
	err = whileListed(func() error {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		remove := adm.RemoveMember
		if removal == RemoveForced {
			remove = adm.ForceRemoveMember
		}
		_, err := remove(cctx, id)
		cancel()
		if err == nil {
			return nil
		}
		if in, lerr := listed(); lerr == nil && !in {
			if client.IsUnknown(err) || cctx.Err() != nil {
				slow++
			}
			return nil
		}
		return fmt.Errorf("verify: remove member %s: %w", id, err)
	})
	return slow, err
}

// drainStep starts the drain of id (once) and reports whether the
// controller shows it drained (it holds no replica, leadership or
// configuration entry): nil once it is.
func drainStep(ctx context.Context, adm MemberAdmin, id string, opTimeout time.Duration) func() error {
	started := false
	return func() error {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		if !started {
			if _, err := adm.DrainMember(cctx, id, false); err != nil {
				return fmt.Errorf("verify: drain member %s: %w", id, err)
			}
			started = true
		}
		ns, err := adm.ListNodes(cctx)
		if err != nil {
			return fmt.Errorf("verify: drain member %s: %w", id, err)
		}
		for _, n := range ns.Nodes {
			if n.Id != id {
				continue
			}
			if n.State == "drained" {
				return nil
			}
			return fmt.Errorf("verify: drain member %s: %s, %d replicas and %d leaderships left", id, n.State, n.Replicas, n.Leaders)
		}
		return fmt.Errorf("verify: drain member %s: not in the node list", id)
	}
}

// ReplicaMover is the part of the public client a move fault needs.
// *client.Client is one.
type ReplicaMover interface {
	MoveReplica(ctx context.Context, group, from, to string) (*metapb.MoveReplicaResponse, error)
	ListGroups(ctx context.Context) (*metapb.ListGroupsResponse, error)
}

var _ ReplicaMover = (*client.Client)(nil)

// MoveReplica has the directory move group's replica from node from to
// node to, asking again (each call bounded by opTimeout) until the move
// is recorded or ctx ends. A refusal that only says "not yet" is asked
// again: the group is changing (REVISION_CONFLICT), or to has not
// reported to the controller yet (a node that just joined). It returns
// the group's replicas once one is on to, whoever put it there: the
// move's record takes from out as it puts to in, and placement may have
// moved a replica there first, this one or another (a spare that just
// joined is filled at once: the move can then never be made, and asking
// again until ctx ended held a fault for two minutes in ci26). An
// unknown outcome is resolved the same way, from the directory.
func MoveReplica(ctx context.Context, mv ReplicaMover, group, from, to string, opTimeout time.Duration) ([]string, error) {
	var replicas []string
	var final error // a refusal asking again cannot change
	err := pollBounded(ctx, opTimeout, func(cctx context.Context) error {
		gs, err := mv.ListGroups(cctx)
		if err != nil {
			return err
		}
		for _, g := range gs.Groups {
			if g.Group != group {
				continue
			}
			replicas = replicas[:0]
			for _, r := range g.Replicas {
				replicas = append(replicas, r.Node)
			}
			if slices.Contains(replicas, to) {
				return nil
			}
			if !slices.Contains(replicas, from) {
				final = fmt.Errorf("verify: move %s: %s holds none of its replicas %v", group, from, replicas)
				return nil
			}
			_, err := mv.MoveReplica(cctx, group, from, to)
			if err == nil {
				return poll.Check(false, "recorded; reading it back")
			}
			return fmt.Errorf("verify: move %s from %s to %s: %w", group, from, to, err)
		}
		final = fmt.Errorf("verify: move %s: no such group", group)
		return nil
	})
	if final != nil {
		return replicas, final
	}
	return replicas, err
}

// pollBounded polls attempt until it succeeds or ctx ends (poll.Until),
// each attempt bounded by opTimeout.
func pollBounded(ctx context.Context, opTimeout time.Duration, attempt func(ctx context.Context) error) error {
	return poll.Until(ctx, func() error {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		return attempt(cctx)
	})
}

// WaitFilled waits until the controller has placed a replica on node id
// and no group is moving: a node that joined the pool has been given its
// share (a scale fault's grow lets the controller fill the new node
// before draining it again). Each read is bounded by opTimeout.
func WaitFilled(ctx context.Context, pr PlacementReader, id string, opTimeout time.Duration) error {
	return pollBounded(ctx, opTimeout, func(cctx context.Context) error {
		ns, err := pr.ListNodes(cctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(ns.Nodes, func(n *metapb.NodeInfo) bool { return n.Id == id })
		if i < 0 || ns.Nodes[i].Replicas == 0 {
			return fmt.Errorf("verify: %s holds no replica yet", id)
		}
		gs, err := pr.ListGroups(cctx)
		if err != nil {
			return err
		}
		for _, g := range gs.Groups {
			if g.Moving {
				return fmt.Errorf("verify: %s is still moving", g.Group)
			}
		}
		return nil
	})
}
