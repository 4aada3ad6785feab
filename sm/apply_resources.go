package sm

import (
	"github.com/metamq/meta/sm/logpb"
)

// Metadata resources: create fails if the resource exists, update and
// delete fail if it does not or if its revision is not the expected one
// (a compare failure, not an error of the system).

func validResource(kind int32, name string) *logpb.Result {
	if kind <= 0 || kind > 255 || name == "" {
		return invalid("resource kind and name must be set")
	}
	return nil
}

func (a *applier) getResource(kind int32, name string) (*logpb.Resource, []byte, error) {
	return getStored(a, resourceKey(kind, name), &logpb.Resource{})
}

// currentResource validates an op's kind and name and reads the resource
// it names; a non-nil result (invalid) or error ends the op.
func (a *applier) currentResource(kind int32, name string) (*logpb.Resource, []byte, *logpb.Result, error) {
	if r := validResource(kind, name); r != nil {
		return nil, nil, r, nil
	}
	cur, curRaw, err := a.getResource(kind, name)
	return cur, curRaw, nil, err
}

// matchingResource is currentResource for an update or a delete: it also
// ends the op when the resource is not found or, with check, is at a
// revision other than expected.
func (a *applier) matchingResource(kind int32, name string, expected uint64, check bool) (*logpb.Resource, []byte, *logpb.Result, error) {
	cur, curRaw, res, err := a.currentResource(kind, name)
	switch {
	case res != nil || err != nil:
		return nil, nil, res, err
	case cur == nil:
		return nil, nil, notFound("resource not found"), nil
	case check && cur.ModRevision != expected:
		return nil, nil, &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, PrevValue: curRaw}, nil
	}
	return cur, curRaw, nil, nil
}

func (a *applier) resourceCreate(c *logpb.ResourceCreate) (*logpb.Result, error) {
	cur, curRaw, res, err := a.currentResource(c.Kind, c.Name)
	if res != nil || err != nil {
		return res, err
	}
	if cur != nil {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: "resource exists", PrevValue: curRaw}, nil
	}
	rev := a.bump()
	r := &logpb.Resource{Kind: c.Kind, Name: c.Name, Spec: c.Spec, CreateRevision: rev, ModRevision: rev, Version: 1}
	return a.storeResource(r, nil)
}

func (a *applier) resourceUpdate(u *logpb.ResourceUpdate) (*logpb.Result, error) {
	cur, curRaw, res, err := a.matchingResource(u.Kind, u.Name, u.ExpectedRevision, true)
	if cur == nil {
		return res, err
	}
	rev := a.bump()
	r := &logpb.Resource{Kind: u.Kind, Name: u.Name, Spec: u.Spec, CreateRevision: cur.CreateRevision, ModRevision: rev, Version: cur.Version + 1}
	return a.storeResource(r, curRaw)
}

func (a *applier) storeResource(r *logpb.Resource, prevRaw []byte) (*logpb.Result, error) {
	return a.storeResult(logpb.Space_SPACE_RESOURCE, resourceKey(r.Kind, r.Name), resourceKey(r.Kind, r.Name)[1:], r, prevRaw)
}

func (a *applier) resourceDelete(d *logpb.ResourceDelete) (*logpb.Result, error) {
	cur, curRaw, res, err := a.matchingResource(d.Kind, d.Name, d.ExpectedRevision, d.ExpectedRevision != 0)
	if cur == nil {
		return res, err
	}
	a.bump()
	key := resourceKey(d.Kind, d.Name)
	a.b.Delete(a.m.space, key)
	if err := a.emit(logpb.Space_SPACE_RESOURCE, key[1:], nil, curRaw, true); err != nil {
		return nil, err
	}
	return &logpb.Result{PrevValue: curRaw, Count: 1}, nil
}
