// Package poll waits for a condition with a deadline: the one helper that
// tests and the fault harness use instead of sleeping to synchronise.
// Until serves code with a context (the nemeses); For serves tests.
//
// poll imports only the standard library, so any package's tests may use
// it (rocks and rpc/transport included).
package poll
