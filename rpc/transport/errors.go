package transport

import "errors"

var (
	// ErrClosed is returned by a Manager or Transport that has been closed,
	// and by calls to a peer whose group or manager is closing.
	ErrClosed = errors.New("transport: closed")
	// ErrGroupExists is returned by Manager.Group when the group is open.
	ErrGroupExists = errors.New("transport: group already open")
	// ErrClusterMismatch is returned when a peer rejected a message because
	// its cluster id differs from ours (or it does not know its id yet).
	ErrClusterMismatch = errors.New("transport: cluster id mismatch")
	// ErrUnknownGroup is returned when a peer does not host the group.
	ErrUnknownGroup = errors.New("transport: unknown group")
	// ErrNoHandler is returned when a peer has no PeerHandler set yet.
	ErrNoHandler = errors.New("transport: no peer handler")
	// ErrUnknownCall: the peer has no handler for a named call (it runs a
	// release that does not know it). A PeerHandler's Call returns an
	// error wrapping it; the caller's error wraps it too (the wire carries
	// it as REASON_UNKNOWN_CALL). A peer of a release before this reason
	// sends only its message.
	ErrUnknownCall = errors.New("transport: the peer does not know the named call")
	// ErrStalled is returned when a peer made no progress within the
	// configured timeout (a pipeline response or a snapshot chunk).
	ErrStalled = errors.New("transport: peer made no progress within timeout")
	// ErrInvalidConfig wraps every problem Config.Validate reports.
	ErrInvalidConfig = errors.New("transport: invalid config")
)
