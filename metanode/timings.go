package metanode

import "time"

// timings are every wait and bound the node uses, derived in this one place
// from Config (most from ElectionTimeout, so that a cluster tuned for a
// slower network stretches them all together).
type timings struct {
	// leaderRetry bounds how long a definite not-leader answer is retried
	// by Propose and the named calls before it is returned.
	leaderRetry time.Duration
	// leaderWait bounds one wait for a group to have a leader.
	leaderWait time.Duration
	// applyEnqueue is how long raft may take to accept an entry (raft's
	// Apply timeout: the entry is then definitely not in the log).
	applyEnqueue time.Duration
	// configChange bounds raft's acceptance of a configuration change.
	configChange time.Duration
	// readRound bounds one shared leadership confirmation.
	readRound time.Duration
	// markerRetry is the pause between attempts of a term's marker entry.
	markerRetry time.Duration
	// reconcileRound bounds one round of membership reconciliation.
	reconcileRound time.Duration
	// peerCall bounds a single call to a peer made by the node itself
	// (probing a member's applied index, asking a leader to remove a
	// server, joining).
	peerCall time.Duration
	// freshSnapshotPause is how long a follower waits before it asks its
	// leader for a fresh snapshot again.
	freshSnapshotPause time.Duration
	// joinPause is the first pause between join attempts (it grows to 10×).
	joinPause time.Duration
	// transferSettle is how long a leadership transfer target whose
	// transfer did not end cleanly stays out of reach (transfer.go).
	transferSettle time.Duration
	// transferContact: a target that has not answered for longer is not
	// given a leadership transfer (transfer.go).
	transferContact time.Duration
	// healthInterval is how often the gRPC health status is brought in
	// step with Ready.
	healthInterval time.Duration
}

func (c Config) timings() timings {
	e := c.ElectionTimeout
	return timings{
		leaderRetry:        4 * e,
		leaderWait:         2 * e,
		applyEnqueue:       5 * e,
		configChange:       5 * e,
		readRound:          5 * e,
		markerRetry:        e / 10,
		reconcileRound:     10 * e,
		peerCall:           3 * e,
		freshSnapshotPause: e,
		joinPause:          e / 5,
		healthInterval:     e / 2,
		transferSettle:     5 * e,
		transferContact:    2 * e,
	}
}
