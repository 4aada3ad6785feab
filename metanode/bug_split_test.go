//go:build metabugs

package metanode_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/metamq/meta/verify/poll"
)

// The planted bug splitunmarked (sm): a change to a tracked range's key
// ending in "unmarked" is neither marked nor summed. Made between the
// base and the fence, it is missing from the child's copy and from the
// fence digest alike, so the acquire passes; the scan that verifies the
// fence digest before the drop must stop the split (stuck, published,
// the parent's copy kept) instead of finishing it.
func TestPlantedSplitUnmarked(t *testing.T) {
	t.Setenv("META_BUG", "splitunmarked")
	_, cl := writeBetweenBaseAndFence(t, "between/1-unmarked")
	poll.For(t, "the split stopped by its verification", 90*time.Second, func() error {
		gs, err := groupsOf(t, cl, "data-0")
		if err != nil {
			return err
		}
		if p := gs[0]; p == nil || p.SplitPhase != "published" || !strings.Contains(p.SplitError, "verification") {
			return fmt.Errorf("data-0: %v", p)
		}
		return nil
	})
}
