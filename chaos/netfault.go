package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Network faults.
//
// Mechanism. Every fault is an iptables rule in a node's own network
// namespace, entered from the host with `nsenter -t <pid> -n` and written
// with `iptables-restore`, which replaces the namespace's filter table in
// one transaction. Containers run no shell and need no tools or
// capabilities. Docker's own rules in the namespace (the embedded DNS
// server, in the nat table) are untouched.
//
// Scope. Rules match the peers' fixed IPs on the run network and nothing
// else, so only node-to-node traffic is affected. Clients are never
// partitioned, as in Jepsen: host-to-node traffic arrives from the bridge
// gateway (through docker-proxy or straight over the bridge) and DNS
// answers come from 127.0.0.11, neither of which is a peer IP.
//
// Model. The Cluster keeps the faults in force per directed link
// (from -> to): drop, loss probability, delay and jitter. Each operation
// below adds to that model and re-renders the rules of the nodes it touches,
// so faults compose (a partition plus a delay elsewhere), and a restarted
// node, which comes back in a fresh namespace, gets its rules again.
//
// Every rule acts on the receiver's ingress (INPUT), as Jepsen's partitions
// do. The rules of node X, in order:
//
//	INPUT -s P -j DROP                    for every dropped link P -> X
//	INPUT -s P -m statistic --mode random --probability p -j DROP
//	                                      for every lossy link P -> X
//	INPUT -s P -j NFQUEUE --queue-num i --queue-bypass
//	                                      for every delayed link P -> X
//
// Why ingress and not the sender's egress: a packet dropped in OUTPUT makes
// the sender's send fail at once (EPERM), which a real partition or a lossy
// wire never does; and a packet held in OUTPUT still counts against the
// sending TCP socket (TCP small queues), which throttled a delayed 1 MiB
// transfer to about 70 KB/s here. A packet that reached the receiver's
// namespace has left the sender's accounting, so ingress faults look like
// the wire. Loss and delay act once per packet: a link delay d between A and
// B adds d to each direction, 2d to a round trip; loss p on a link drops
// each packet in either direction with probability p.
//
// Restarts. A restarted node runs for a few milliseconds before its rules
// are back (Docker has no hook between creating the namespace and starting
// the process). Its own sends stay blocked by its peers' rules; only what
// peers send to it can arrive in that window.
//
// Delay. This kernel has no sch_netem, so delayed packets go to an NFQUEUE
// whose reader in this process holds each one for its delay, then accepts it
// (nfqueue.go). --queue-bypass lets packets through if no reader is bound,
// so a dead harness cannot black-hole a link.

// linkFault is what is done to packets on one directed link.
type linkFault struct {
	drop   bool
	loss   float64 // probability in (0, 1]; 0 means none
	delay  time.Duration
	jitter time.Duration
}

func (f linkFault) zero() bool { return f == linkFault{} }

// dirLink is a directed link between two nodes, by index.
type dirLink struct{ from, to int }

// ErrBadFault is returned for an impossible fault: a node linked to itself,
// groups that overlap or leave a node out, p outside (0, 1], ... (An
// unknown node name is ErrUnknownNode.)
var ErrBadFault = errors.New("chaos: bad fault")

// Isolate cuts every link of the node, both ways.
func (c *Cluster) Isolate(ctx context.Context, name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		for _, p := range c.nodes {
			if p != n {
				set(dirLink{n.index, p.index}, dropLink)
				set(dirLink{p.index, n.index}, dropLink)
			}
		}
	})
}

// Partition splits the cluster into the given groups: nodes in different
// groups cannot exchange packets. Every node must be in exactly one group
// (a majority/minority split is two groups); spares may be left out, and
// keep all their links. It adds to the faults in force; HealPartitions or
// HealNetwork undo it.
func (c *Cluster) Partition(ctx context.Context, groups [][]string) error {
	return c.cutGroups(ctx, "partition", groups, -1)
}

// Bridge cuts every link between the left and right halves; the bridge
// node keeps its links to both, so each half sees it and neither sees the
// other. Every node must be in left, right or be the bridge (spares may
// be left out).
func (c *Cluster) Bridge(ctx context.Context, left, right []string, bridge string) error {
	return c.cutGroups(ctx, "bridge", [][]string{left, right, {bridge}}, 2)
}

// cutGroups drops every link between nodes of different groups, except
// the links of the group whose index is keep (-1: none). Every member must
// be in a group; what names the fault in the error that says otherwise.
// Partition and Bridge cut with it.
func (c *Cluster) cutGroups(ctx context.Context, what string, groups [][]string, keep int) error {
	group, err := c.groupOf(groups...)
	if err != nil {
		return err
	}
	if err := c.placesAll(group); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadFault, what, err)
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		for _, a := range c.nodes {
			for _, b := range c.nodes {
				ga, oka := group[a.index]
				gb, okb := group[b.index]
				if oka && okb && ga != gb && ga != keep && gb != keep {
					set(dirLink{a.index, b.index}, dropLink)
				}
			}
		}
	})
}

// DropOneWay drops every packet from one node to another; the reverse
// direction still works. (TCP between the two stalls both ways, since
// acknowledgements are lost; a datagram from `to` still reaches `from`.)
func (c *Cluster) DropOneWay(ctx context.Context, from, to string) error {
	l, err := c.link(from, to)
	if err != nil {
		return err
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) { set(l, dropLink) })
}

// Link is a directed link between two nodes: packets From -> To.
type Link struct{ From, To string }

// DropLinks drops every packet on each of the given directed links, in one
// update of the rules (so a many-link partition appears at once rather than
// link by link). verify's Fault.CutLinks converts with Link(l).
func (c *Cluster) DropLinks(ctx context.Context, links []Link) error {
	dls := make([]dirLink, 0, len(links))
	for _, l := range links {
		dl, err := c.link(l.From, l.To)
		if err != nil {
			return err
		}
		dls = append(dls, dl)
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		for _, dl := range dls {
			set(dl, dropLink)
		}
	})
}

// LossNode drops each packet between the node and any peer, either way,
// with probability p.
func (c *Cluster) LossNode(ctx context.Context, name string, p float64) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	if !(p > 0 && p <= 1) {
		return fmt.Errorf("%w: loss probability %v, want (0, 1]", ErrBadFault, p)
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		for _, q := range c.nodes {
			if q != n {
				set(dirLink{n.index, q.index}, func(f *linkFault) { f.loss = p })
				set(dirLink{q.index, n.index}, func(f *linkFault) { f.loss = p })
			}
		}
	})
}

// LossLink drops each packet between a and b, either way, with
// probability p.
func (c *Cluster) LossLink(ctx context.Context, a, b string, p float64) error {
	l, err := c.link(a, b)
	if err != nil {
		return err
	}
	if !(p > 0 && p <= 1) {
		return fmt.Errorf("%w: loss probability %v, want (0, 1]", ErrBadFault, p)
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		set(l, func(f *linkFault) { f.loss = p })
		set(dirLink{l.to, l.from}, func(f *linkFault) { f.loss = p })
	})
}

// Delay holds each packet between a and b, either way, for d plus a
// uniformly random offset in [-jitter, +jitter]. A round trip between them
// takes about 2d more. With jitter, packets may be reordered, as with
// netem. Requires 0 < d and 0 <= jitter <= d.
func (c *Cluster) Delay(ctx context.Context, a, b string, d, jitter time.Duration) error {
	l, err := c.link(a, b)
	if err != nil {
		return err
	}
	if err := checkDelay(d, jitter); err != nil {
		return err
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		set(l, func(f *linkFault) { f.delay, f.jitter = d, jitter })
		set(dirLink{l.to, l.from}, func(f *linkFault) { f.delay, f.jitter = d, jitter })
	})
}

// DelayNode delays every link of the node as Delay does.
func (c *Cluster) DelayNode(ctx context.Context, name string, d, jitter time.Duration) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	if err := checkDelay(d, jitter); err != nil {
		return err
	}
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		for _, q := range c.nodes {
			if q != n {
				set(dirLink{n.index, q.index}, func(f *linkFault) { f.delay, f.jitter = d, jitter })
				set(dirLink{q.index, n.index}, func(f *linkFault) { f.delay, f.jitter = d, jitter })
			}
		}
	})
}

// DegradeNodes delays (as Delay does) and, with loss > 0, drops a loss
// fraction of the packets on every link touching any of the nodes, in one
// update of the rules. Two updates would replace the tables twice, and the
// kernel drops the packets a delay queue holds at each replacement.
func (c *Cluster) DegradeNodes(ctx context.Context, names []string, d, jitter time.Duration, loss float64) error {
	if err := checkDelay(d, jitter); err != nil {
		return err
	}
	if loss < 0 || loss > 1 {
		return fmt.Errorf("%w: loss probability %v, want [0, 1]", ErrBadFault, loss)
	}
	var ns []*node
	for _, name := range names {
		n, err := c.node(name)
		if err != nil {
			return err
		}
		ns = append(ns, n)
	}
	degrade := func(f *linkFault) { f.delay, f.jitter, f.loss = d, jitter, loss }
	return c.update(ctx, func(set func(dirLink, func(*linkFault))) {
		for _, n := range ns {
			for _, q := range c.nodes {
				if q != n {
					set(dirLink{n.index, q.index}, degrade)
					set(dirLink{q.index, n.index}, degrade)
				}
			}
		}
	})
}

func checkDelay(d, jitter time.Duration) error {
	if d <= 0 || jitter < 0 || jitter > d {
		return fmt.Errorf("%w: delay %v jitter %v, want 0 < delay and 0 <= jitter <= delay", ErrBadFault, d, jitter)
	}
	return nil
}

// HealPartitions removes every drop (Isolate, Partition, Bridge,
// DropOneWay) and keeps loss and delay.
func (c *Cluster) HealPartitions(ctx context.Context) error {
	return c.clear(ctx, func(f *linkFault) { f.drop = false })
}

// HealLoss removes every loss fault.
func (c *Cluster) HealLoss(ctx context.Context) error {
	return c.clear(ctx, func(f *linkFault) { f.loss = 0 })
}

// HealDelay removes every delay fault.
func (c *Cluster) HealDelay(ctx context.Context) error {
	return c.clear(ctx, func(f *linkFault) { f.delay, f.jitter = 0, 0 })
}

// HealNetwork removes every network fault: full connectivity again.
func (c *Cluster) HealNetwork(ctx context.Context) error {
	return c.clear(ctx, func(f *linkFault) { *f = linkFault{} })
}

// LinkFault describes the fault in force on one directed link.
type LinkFault struct {
	From, To string
	Drop     bool
	Loss     float64
	Delay    time.Duration
	Jitter   time.Duration
}

// NetworkFaults returns the faults in force, sorted by link.
func (c *Cluster) NetworkFaults() []LinkFault {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []LinkFault
	for l, f := range c.faults {
		out = append(out, LinkFault{
			From: c.nodes[l.from].name, To: c.nodes[l.to].name,
			Drop: f.drop, Loss: f.loss, Delay: f.delay, Jitter: f.jitter,
		})
	}
	slices.SortFunc(out, func(a, b LinkFault) int {
		return cmpLinks(c.byName[a.From].index, c.byName[a.To].index, c.byName[b.From].index, c.byName[b.To].index)
	})
	return out
}

func cmpLinks(af, at, bf, bt int) int {
	if af != bf {
		return af - bf
	}
	return at - bt
}

func dropLink(f *linkFault) { f.drop = true }

// link resolves a directed link between two distinct nodes.
func (c *Cluster) link(from, to string) (dirLink, error) {
	a, err := c.node(from)
	if err != nil {
		return dirLink{}, err
	}
	b, err := c.node(to)
	if err != nil {
		return dirLink{}, err
	}
	if a == b {
		return dirLink{}, fmt.Errorf("%w: link from %s to itself", ErrBadFault, from)
	}
	return dirLink{a.index, b.index}, nil
}

// placesAll checks that every node of Nodes() has a group; spares may be
// left out (a spare that is left out keeps all its links).
func (c *Cluster) placesAll(group map[int]int) error {
	for _, n := range c.members() {
		if _, ok := group[n.index]; !ok {
			return fmt.Errorf("node %s is in no group", n.name)
		}
	}
	return nil
}

// groupOf maps node index to group index; a node may appear once.
func (c *Cluster) groupOf(groups ...[]string) (map[int]int, error) {
	group := map[int]int{}
	for gi, g := range groups {
		for _, name := range g {
			n, err := c.node(name)
			if err != nil {
				return nil, err
			}
			if _, dup := group[n.index]; dup {
				return nil, fmt.Errorf("%w: node %s in two groups", ErrBadFault, name)
			}
			group[n.index] = gi
		}
	}
	return group, nil
}

// update applies edits to the fault model, then re-renders the rules of
// every node whose links changed.
func (c *Cluster) update(ctx context.Context, edit func(set func(dirLink, func(*linkFault)))) error {
	touched := map[int]bool{}
	c.mu.Lock()
	if c.terminated {
		c.mu.Unlock()
		return ErrTerminated
	}
	edit(func(l dirLink, fn func(*linkFault)) {
		f := c.faults[l]
		fn(&f)
		if f.zero() {
			delete(c.faults, l)
		} else {
			c.faults[l] = f
		}
		touched[l.from], touched[l.to] = true, true
	})
	c.mu.Unlock()
	return c.syncNodes(ctx, touched)
}

// clear applies fn to every fault in force and re-renders every node.
func (c *Cluster) clear(ctx context.Context, fn func(*linkFault)) error {
	c.mu.Lock()
	if c.terminated {
		c.mu.Unlock()
		return ErrTerminated
	}
	for l, f := range c.faults {
		fn(&f)
		if f.zero() {
			delete(c.faults, l)
		} else {
			c.faults[l] = f
		}
	}
	c.mu.Unlock()
	all := map[int]bool{}
	for _, n := range c.nodes {
		all[n.index] = true
	}
	return c.syncNodes(ctx, all)
}

func (c *Cluster) syncNodes(ctx context.Context, which map[int]bool) error {
	var errs []error
	for _, n := range c.nodes {
		if !which[n.index] {
			continue
		}
		n.mu.Lock()
		err := c.syncNodeLocked(ctx, n)
		n.mu.Unlock()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// syncNodeLocked makes node n's rules and delay queues match the model. A
// node that is not running is skipped: it gets its rules when it starts.
// The caller holds n.mu.
func (c *Cluster) syncNodeLocked(ctx context.Context, n *node) error {
	if n.ctr == nil {
		return nil // never created: nothing to sync
	}
	st, err := c.state(ctx, n)
	if err != nil {
		return err
	}
	if !st.Running || st.Pid == 0 {
		c.closeQueues(n)
		return nil
	}
	rules, delays := c.render(n)
	// Readers first, so a packet never meets a queue rule without one;
	// stale readers last, after their rules are gone.
	for peer, f := range delays {
		if err := c.ensureQueue(n, peer, st.Pid, f); err != nil {
			return err
		}
	}
	if rules != n.applied || n.appliedGen != n.gen {
		if err := iptablesRestore(ctx, st.Pid, rules); err != nil {
			n.applied = ""
			return fmt.Errorf("chaos: rules on %s: %w", n.name, err)
		}
		n.applied, n.appliedGen = rules, n.gen
	}
	c.mu.Lock()
	var stale []*delayQueue
	for l, q := range c.queues {
		if _, keep := delays[l.from]; l.to == n.index && (!keep || q.gen != n.gen) {
			stale = append(stale, q)
			delete(c.queues, l)
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, q := range stale {
		errs = append(errs, q.close())
	}
	return errors.Join(errs...)
}

// render returns node n's iptables-restore input and the delayed links
// into it, by sender index.
func (c *Cluster) render(n *node) (string, map[int]linkFault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var drop, loss, queue []string
	delays := map[int]linkFault{}
	for _, p := range c.nodes {
		if p == n {
			continue
		}
		ip := p.ip.String() + "/32"
		f := c.faults[dirLink{p.index, n.index}]
		if f.drop {
			drop = append(drop, "-A INPUT -s "+ip+" -j DROP")
		}
		if f.loss > 0 {
			loss = append(loss, "-A INPUT -s "+ip+" -m statistic --mode random --probability "+
				strconv.FormatFloat(f.loss, 'f', 6, 64)+" -j DROP")
		}
		if f.delay > 0 {
			queue = append(queue, fmt.Sprintf("-A INPUT -s %s -j NFQUEUE --queue-num %d --queue-bypass", ip, queueNum(p.index)))
			delays[p.index] = f
		}
	}
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, r := range slices.Concat(drop, loss, queue) {
		b.WriteString(r)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String(), delays
}

// queueNum is the NFQUEUE number for packets from a peer: queues are per
// namespace, so the peer's number is unique within a node.
func queueNum(peer int) uint16 { return uint16(peer + 1) }

// ensureQueue makes sure a delay reader for peer -> n runs in n's current
// namespace with the given parameters.
func (c *Cluster) ensureQueue(n *node, peer, pid int, f linkFault) error {
	l := dirLink{peer, n.index}
	c.mu.Lock()
	q := c.queues[l]
	c.mu.Unlock()
	if q != nil && q.gen == n.gen {
		q.setDelay(f.delay, f.jitter)
		return nil
	}
	if q != nil {
		_ = q.close()
	}
	q, err := openDelayQueue(c.log.With("node", n.name, "from", c.nodes[peer].name), pid, queueNum(peer), f.delay, f.jitter)
	if err != nil {
		return fmt.Errorf("chaos: delay %s -> %s: %w", c.nodes[peer].name, n.name, err)
	}
	q.gen = n.gen
	c.mu.Lock()
	if c.terminated {
		c.mu.Unlock()
		return errors.Join(ErrTerminated, q.close())
	}
	c.queues[l] = q
	c.mu.Unlock()
	return nil
}

// closeQueues stops node n's delay readers; its namespace is gone or
// going. The caller holds n.mu.
func (c *Cluster) closeQueues(n *node) {
	c.mu.Lock()
	var qs []*delayQueue
	for l, q := range c.queues {
		if l.to == n.index {
			qs = append(qs, q)
			delete(c.queues, l)
		}
	}
	c.mu.Unlock()
	for _, q := range qs {
		if err := q.close(); err != nil {
			c.log.Debug("chaos: close delay queue", "node", n.name, "err", err)
		}
	}
}

// iptablesRestore replaces the filter table in the network namespace of pid.
func iptablesRestore(ctx context.Context, pid int, rules string) error {
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-n", "iptables-restore", "-w")
	cmd.Stdin = strings.NewReader(rules)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nsenter iptables-restore: %w: %s", err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
