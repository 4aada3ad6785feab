package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildRelease builds ./cmd/metanode as it was at commit of the git
// repository at repo, into the file out: an older release's binary, for
// upgrades from it (RunOptions.Previous, and cmd/metanode's upgrade
// tests). The sources come from git archive into a temporary directory
// (the working tree is not touched) and build with cgo on, from the
// module cache like any build. It fails when commit is not in the
// repository's history (a shallow clone).
func BuildRelease(ctx context.Context, repo, commit, out string) error {
	out, err := filepath.Abs(out) // go build runs in the sources' directory
	if err != nil {
		return fmt.Errorf("chaos: release %s: %w", commit, err)
	}
	full, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--verify", commit+"^{commit}").Output()
	if err != nil {
		return fmt.Errorf("chaos: release %s: not a commit of %s (a shallow clone?): %w", commit, repo, err)
	}
	src, err := os.MkdirTemp("", "meta-release-")
	if err != nil {
		return fmt.Errorf("chaos: release %s: %w", commit, err)
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", strings.TrimSpace(string(full)))
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	var archiveErrOut, untarErrOut bytes.Buffer // apart: each is written by its own goroutine
	archive.Stderr, untar.Stderr = &archiveErrOut, &untarErrOut
	if untar.Stdin, err = archive.StdoutPipe(); err != nil {
		return fmt.Errorf("chaos: release %s: %w", commit, err)
	}
	if err := untar.Start(); err != nil {
		return fmt.Errorf("chaos: release %s: tar: %w", commit, err)
	}
	archiveErr := archive.Run()
	if err := untar.Wait(); archiveErr != nil || err != nil {
		return fmt.Errorf("chaos: release %s: git archive | tar: %v, %v\n%s%s", commit, archiveErr, err, archiveErrOut.Bytes(), untarErrOut.Bytes())
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/metanode")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("chaos: release %s: go build: %w\n%s", commit, err, b)
	}
	return nil
}
