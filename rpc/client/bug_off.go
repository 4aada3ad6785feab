//go:build !metabugs

package client

import "context"

// plantedRetryUnknown returns the unknown outcome as it is. Builds with the
// metabugs tag replace it with a planted bug the verification harness must
// catch (bug_on.go).
func plantedRetryUnknown[R any](_ context.Context, _ *Client, _ string, _ func(context.Context, *endpoint) (R, error), err error) (R, error) {
	var zero R
	return zero, err
}
