package chaos

import (
	"context"
	"testing"
	"time"
)

// Figures for the report; run with
//
//	go test ./chaos -run '^$' -bench . -benchtime 10x

func BenchmarkStartCluster3(b *testing.B) {
	requireDocker(b)
	img := standinImage(b)
	ctx := context.Background()
	for b.Loop() {
		c, err := StartCluster(ctx, Options{Nodes: 3, Image: img.Tag, RunDir: b.TempDir(), Port: standinPort, Args: standinArgs})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Terminate(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkKillStart(b *testing.B) {
	c := startStandins(b, 3)
	ctx := context.Background()
	for b.Loop() {
		restart(b, ctx, c, "n1")
	}
}

func BenchmarkIsolateHeal5(b *testing.B) {
	c := startStandins(b, 5)
	ctx := context.Background()
	for b.Loop() {
		if err := c.Isolate(ctx, "n1"); err != nil {
			b.Fatal(err)
		}
		if err := c.HealNetwork(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDelayHeal5(b *testing.B) {
	c := startStandins(b, 5)
	ctx := context.Background()
	for b.Loop() {
		if err := c.DelayNode(ctx, "n1", 100*time.Millisecond, 10*time.Millisecond); err != nil {
			b.Fatal(err)
		}
		if err := c.HealNetwork(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
