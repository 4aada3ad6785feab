package metanode_test

import (
	"fmt"
	"testing"

	"github.com/metamq/meta/metanode"
	"github.com/metamq/meta/metanode/metanodetest"
)

// A node reads its groups' sizes from RocksDB once every
// ReportSizesEvery reports and repeats them in between: 1 MiB written
// into a group's memtable shows in the report that reads sizes again, not
// before.
func TestReportReadsSizesOnceEveryFewReports(t *testing.T) {
	c := metanodetest.Start(t, metanodetest.Options{})
	n := c.Running(c.IDs()[0])
	st := metanode.NewReportStateForTest()
	const group = "data-0"
	first, ok := n.ReportBytesForTest(st)[group]
	if !ok {
		t.Fatalf("no report of %s", group)
	}
	for i := range 64 {
		if err := n.DamageForTest(group, fmt.Appendf(nil, "size-%03d", i), make([]byte, 16<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if metanode.ReportSizesEvery < 2 {
		t.Fatalf("ReportSizesEvery = %d: every report reads the sizes", metanode.ReportSizesEvery)
	}
	for i := 2; i <= 100; i++ {
		got := n.ReportBytesForTest(st)[group]
		if got == first {
			continue
		}
		if i != metanode.ReportSizesEvery+1 || got < first+1<<20 {
			t.Fatalf("report %d: size %d, want the first report's %d until report %d, then at least %d (1 MiB more)",
				i, got, first, metanode.ReportSizesEvery+1, first+1<<20)
		}
		return
	}
	t.Fatalf("the size stayed %d for 100 reports after 1 MiB was written", first)
}
