// Package testkit holds the helpers that the tests of many packages share:
// a context bound to a test, a clock the test moves by hand, the
// goroutine-leak check with the gRPC and netpoll goroutines that wind down
// just after a Close, a log buffer safe for concurrent use, and a gRPC
// server on a free loopback port.
//
// Only tests import testkit (the architecture test reads non-test files).
package testkit
