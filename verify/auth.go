package verify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metamq/meta/rpc/metapb"
)

// CheckerAuth judges a cluster that runs with TLS and authentication: a
// caller that presents no credentials is refused, and what it tried did
// not happen.
const CheckerAuth = "auth"

// CheckAuth probes a cluster running with authentication through anon, a
// connection that trusts the cluster's CA but presents neither a client
// certificate nor a token, and reads back through admin: an anonymous
// write of key, an anonymous read, and the admin-only state hash of
// endpoint must each be refused as unauthenticated (or not permitted),
// and key must then be absent. A probe the cluster did not answer (no
// node reachable, a deadline) is left unjudged (judged/total say how many
// were); a probe that succeeded, or the key present, makes the check
// invalid.
func CheckAuth(ctx context.Context, anon, admin Conn, endpoint, key string) CheckResult {
	start := time.Now()
	res := CheckResult{Checker: CheckerAuth, Verdict: Valid}
	var notes []string
	judge := func(what string, err error) {
		res.Total++
		switch status.Code(err) {
		case codes.Unauthenticated, codes.PermissionDenied:
			res.Judged++
			notes = append(notes, what+": refused")
		case codes.OK:
			res.Judged++
			res.Verdict = Invalid
			res.Failing = append(res.Failing, what+" by a caller without credentials succeeded")
		default:
			notes = append(notes, fmt.Sprintf("%s: not judged (%v)", what, err))
		}
	}
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 10*time.Second) }
	cctx, cancel := call()
	_, err := anon.Put(cctx, &metapb.PutRequest{Key: []byte(key), Value: []byte("anonymous")})
	cancel()
	judge("put "+key, err)
	cctx, cancel = call()
	_, err = anon.Get(cctx, &metapb.GetRequest{Key: []byte(key)})
	cancel()
	judge("get "+key, err)
	cctx, cancel = call()
	_, err = anon.StateHash(cctx, endpoint, metapb.MetadataGroup)
	cancel()
	judge("state hash of "+metapb.MetadataGroup+" on "+endpoint, err)

	// What the anonymous write would have left: read as the admin.
	res.Total++
	cctx, cancel = call()
	got, err := admin.Get(cctx, &metapb.GetRequest{Key: []byte(key)})
	cancel()
	switch {
	case err != nil:
		notes = append(notes, fmt.Sprintf("read back %s: not judged (%v)", key, err))
	case got.Kv != nil:
		res.Judged++
		res.Verdict = Invalid
		res.Failing = append(res.Failing, fmt.Sprintf("%s holds %q: the anonymous write applied", key, got.Kv.Value))
	default:
		res.Judged++
		notes = append(notes, "read back "+key+": absent")
	}
	res.Details = strings.Join(notes, "; ")
	res.Elapsed = time.Since(start)
	return res
}
