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
	r := &logpb.Resource{}
	raw, ok, err := a.get(resourceKey(kind, name), r)
	if err != nil || !ok {
		return nil, nil, err
	}
	return r, raw, nil
}

func (a *applier) resourceCreate(c *logpb.ResourceCreate) (*logpb.Result, error) {
	if r := validResource(c.Kind, c.Name); r != nil {
		return r, nil
	}
	cur, curRaw, err := a.getResource(c.Kind, c.Name)
	if err != nil {
		return nil, err
	}
	if cur != nil {
		return &logpb.Result{Code: logpb.Code_CODE_CONFLICT, Message: "resource exists", PrevValue: curRaw}, nil
	}
	rev := a.bump()
	r := &logpb.Resource{Kind: c.Kind, Name: c.Name, Spec: c.Spec, CreateRevision: rev, ModRevision: rev, Version: 1}
	return a.storeResource(r, nil)
}

func (a *applier) resourceUpdate(u *logpb.ResourceUpdate) (*logpb.Result, error) {
	if r := validResource(u.Kind, u.Name); r != nil {
		return r, nil
	}
	cur, curRaw, err := a.getResource(u.Kind, u.Name)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return notFound("resource not found"), nil
	}
	if cur.ModRevision != u.ExpectedRevision {
		return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, PrevValue: curRaw}, nil
	}
	rev := a.bump()
	r := &logpb.Resource{Kind: u.Kind, Name: u.Name, Spec: u.Spec, CreateRevision: cur.CreateRevision, ModRevision: rev, Version: cur.Version + 1}
	return a.storeResource(r, curRaw)
}

func (a *applier) storeResource(r *logpb.Resource, prevRaw []byte) (*logpb.Result, error) {
	raw, err := a.writeRaw(resourceKey(r.Kind, r.Name), r)
	if err != nil {
		return nil, err
	}
	if err := a.emit(logpb.Space_SPACE_RESOURCE, resourceKey(r.Kind, r.Name)[1:], raw, prevRaw, false); err != nil {
		return nil, err
	}
	return &logpb.Result{Value: raw, PrevValue: prevRaw}, nil
}

func (a *applier) resourceDelete(d *logpb.ResourceDelete) (*logpb.Result, error) {
	if r := validResource(d.Kind, d.Name); r != nil {
		return r, nil
	}
	cur, curRaw, err := a.getResource(d.Kind, d.Name)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return notFound("resource not found"), nil
	}
	if d.ExpectedRevision != 0 && cur.ModRevision != d.ExpectedRevision {
		return &logpb.Result{Code: logpb.Code_CODE_COMPARE_FAILED, PrevValue: curRaw}, nil
	}
	a.bump()
	key := resourceKey(d.Kind, d.Name)
	a.b.Delete(a.m.space, key)
	if err := a.emit(logpb.Space_SPACE_RESOURCE, key[1:], nil, curRaw, true); err != nil {
		return nil, err
	}
	return &logpb.Result{PrevValue: curRaw, Count: 1}, nil
}
