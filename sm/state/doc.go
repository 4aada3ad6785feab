// Package state is the read-only face of a group's state machine: the
// Reader interface that sm.Machine implements and the plain records its
// reads return. The public servers (rpc/server) depend on this package and
// on sm/logpb, never on the state machine itself, and can be tested
// against any Reader.
//
// state imports only sm/logpb.
package state
