package verify

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestFaultTableDispatch(t *testing.T) {
	var calls []string
	step := func(name string) func(context.Context, *Fault) error {
		return func(_ context.Context, f *Fault) error {
			calls = append(calls, name+" "+string(f.Kind))
			return nil
		}
	}
	tab := FaultTable{FaultKill: {Inject: step("inject"), Heal: step("heal")}}
	tab.Set(FaultOps{
		Inject: FaultOnly(func(f *Fault) error { return step("cut")(nil, f) }),
		Heal:   CtxOnly(func(context.Context) error { calls = append(calls, "heal network"); return nil }),
	}, FaultIsolate, FaultSplit)
	ctx := context.Background()
	for _, k := range []FaultKind{FaultKill, FaultSplit} {
		f := &Fault{Kind: k}
		if err := tab.Inject(ctx, "test", f); err != nil {
			t.Fatalf("Inject(%s): %v", k, err)
		}
		if err := tab.Heal(ctx, "test", f); err != nil {
			t.Fatalf("Heal(%s): %v", k, err)
		}
	}
	if want := []string{"inject kill", "heal kill", "cut split", "heal network"}; !slices.Equal(calls, want) {
		t.Errorf("calls: got %q, want %q", calls, want)
	}
	if !tab.Supports(FaultIsolate) || tab.Supports(FaultPause) {
		t.Errorf("Supports: isolate %t, pause %t; want true, false", tab.Supports(FaultIsolate), tab.Supports(FaultPause))
	}
	for _, call := range []func(context.Context, string, *Fault) error{tab.Inject, tab.Heal} {
		err := call(ctx, "test", &Fault{Kind: FaultPause})
		if !errors.Is(err, ErrUnsupported) || err.Error() != "test: "+ErrUnsupported.Error()+": pause" {
			t.Errorf("unsupported kind: got %v, want ErrUnsupported after the prefix", err)
		}
	}
}
