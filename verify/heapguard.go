package verify

import (
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"
)

// Porcupine's search remembers every (linearized set, state) pair it has
// seen, and a history it cannot decide quickly (many writes whose outcome
// is unknown, many concurrent operations on one key) makes that memory
// grow for as long as the search runs: its budget is wall-clock time, not
// bytes. Several such searches at once (one per undecided partition, and
// several runs' checks in one test process) once grew a test process to
// 24 GiB, where the kernel killed it.
//
// So the searches run under a bound on the process's Go heap: when the
// heap holds more than heapBudget bytes, every search of the check stops
// (each step of the model is refused, so porcupine unwinds at once), and
// the partitions not decided by then are Unknown, said to be so because
// of the bound. Unknown is not a pass; a complete linearization found
// before the bound is still Valid, and nothing is ever Invalid because of
// it.

// heapBudget is the bound, in bytes of live and unswept heap objects of
// the whole process (the checks of several runs share it); 0: none.
// META_CHECK_HEAP_MIB overrides the default.
var heapBudget = heapBudgetFrom(os.Getenv("META_CHECK_HEAP_MIB"))

// defaultHeapBudget leaves room on a 24 GiB CI machine for two test
// processes (go test runs packages in parallel) and the clusters they run.
const defaultHeapBudget = 6 << 30

// heapSampleEvery is how often the heap is read while a check runs; the
// search cannot outgrow the bound by more than what it allocates in that
// time.
const heapSampleEvery = 50 * time.Millisecond

func heapBudgetFrom(env string) uint64 {
	if mib, err := strconv.ParseUint(env, 10, 64); err == nil {
		return mib << 20
	}
	return defaultHeapBudget
}

// heapGuard watches the heap during one check and latches once it passes
// the budget.
type heapGuard struct {
	budget uint64
	over   atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// guardHeap starts watching; close stops it.
func guardHeap(budget uint64) *heapGuard {
	g := &heapGuard{budget: budget, stop: make(chan struct{})}
	if budget == 0 {
		return g
	}
	g.wg.Go(func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		tick := time.NewTicker(heapSampleEvery)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if sample[0].Value.Uint64() > budget {
				g.over.Store(true)
				return
			}
			select {
			case <-g.stop:
				return
			case <-tick.C:
			}
		}
	})
	return g
}

func (g *heapGuard) close() {
	close(g.stop)
	g.wg.Wait()
}

// model is m whose every step is refused once the guard has latched: the
// search then finds no way forward and porcupine returns.
func (g *heapGuard) model(m porcupine.Model) porcupine.Model {
	step := m.Step
	m.Step = func(state, input, output any) (bool, any) {
		if g.over.Load() {
			return false, state
		}
		return step(state, input, output)
	}
	return m
}

// verdict is v, except that a search the guard stopped decided nothing:
// its Invalid (no way forward found) is Unknown.
func (g *heapGuard) verdict(v Verdict) Verdict {
	if v == Invalid && g.over.Load() {
		return Unknown
	}
	return v
}
