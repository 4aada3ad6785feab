package verify

import (
	"context"
	"fmt"
)

// FaultOps are how one nemesis injects and heals one kind of fault.
type FaultOps struct {
	Inject func(ctx context.Context, f *Fault) error
	Heal   func(ctx context.Context, f *Fault) error
}

// FaultTable maps each kind a nemesis carries out to its FaultOps, so that
// a kind's inject and heal stand side by side and one dispatch serves
// Inject and Heal. A kind the table lacks is not supported.
type FaultTable map[FaultKind]FaultOps

// Set gives every one of kinds the same ops (several kinds that one
// mechanism carries out, e.g. the network cuts).
func (t FaultTable) Set(ops FaultOps, kinds ...FaultKind) FaultTable {
	for _, k := range kinds {
		t[k] = ops
	}
	return t
}

// Supports reports whether the table has k.
func (t FaultTable) Supports(k FaultKind) bool {
	_, ok := t[k]
	return ok
}

// Inject calls the inject of f's kind; a kind the table lacks is
// ErrUnsupported, wrapped after prefix ("chaos", "metanodetest").
func (t FaultTable) Inject(ctx context.Context, prefix string, f *Fault) error {
	ops, err := t.ops(prefix, f.Kind)
	if err != nil {
		return err
	}
	return ops.Inject(ctx, f)
}

// Heal calls the heal of f's kind, like Inject.
func (t FaultTable) Heal(ctx context.Context, prefix string, f *Fault) error {
	ops, err := t.ops(prefix, f.Kind)
	if err != nil {
		return err
	}
	return ops.Heal(ctx, f)
}

func (t FaultTable) ops(prefix string, k FaultKind) (FaultOps, error) {
	ops, ok := t[k]
	if !ok {
		return FaultOps{}, fmt.Errorf("%s: %w: %s", prefix, ErrUnsupported, k)
	}
	return ops, nil
}

// CtxOnly adapts a step that needs only the context (a heal that knows
// what to undo from the nemesis's own state) to a FaultOps function.
func CtxOnly(step func(ctx context.Context) error) func(ctx context.Context, f *Fault) error {
	return func(ctx context.Context, _ *Fault) error { return step(ctx) }
}

// FaultOnly adapts a step that needs only the fault (one that starts a
// loop of its own, or blocks links) to a FaultOps function.
func FaultOnly(step func(f *Fault) error) func(ctx context.Context, f *Fault) error {
	return func(_ context.Context, f *Fault) error { return step(f) }
}
