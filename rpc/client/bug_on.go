//go:build metabugs

package client

import (
	"context"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bugRetryUnknown plants the bug "an unknown outcome reported as a definite
// failure and retried": only in builds tagged metabugs, and only while the
// environment variable META_BUG contains "retryunknown".
func bugRetryUnknown() bool { return strings.Contains(os.Getenv("META_BUG"), "retryunknown") }

func plantedRetryUnknown[R any](ctx context.Context, c *Client, group string, call func(context.Context, *endpoint) (R, error), err error) (R, error) {
	var zero R
	if !bugRetryUnknown() {
		return zero, err
	}
	// Wrong on purpose: retry as if nothing had been applied, and report
	// a failed retry as a definite failure.
	r, rerr := call(ctx, c.writeEndpoint(group))
	if rerr == nil {
		return r, nil
	}
	return zero, status.Error(codes.Aborted, "planted bug: unknown outcome reported as failure: "+rerr.Error())
}
