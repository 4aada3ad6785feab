package chaos

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/testcontainers/testcontainers-go"
)

// DefaultImageRepo is the repository part of node image tags.
const DefaultImageRepo = "meta-node"

// ErrMissingLibrary is returned when ldd cannot resolve a shared library the
// binary needs: the image would not start.
var ErrMissingLibrary = errors.New("chaos: shared library not found")

// Image is a node image built by BuildImage.
type Image struct {
	ID  string // the engine's image id, "sha256:..."
	Tag string // "<repo>:<content hash>", what StartCluster runs
}

// ImageOptions configures BuildImage. The zero value is usable.
type ImageOptions struct {
	Repo string       // tag repository; DefaultImageRepo if empty
	Log  *slog.Logger // build progress at debug level; discarded if nil
}

// BuildImage builds a runnable image from one binary without pulling
// anything, and returns it.
//
// The image is FROM scratch and holds exactly: the binary at
// /bin/<base name> (the entrypoint), every shared library `ldd` lists for
// it at the path ldd printed (symlinks resolved to their content, so the
// soname path the loader looks for is a regular file), the ELF loader at its
// absolute path, an empty /tmp (mode 1777), and LD_LIBRARY_PATH naming the
// library directories, because a scratch image has no ld.so.cache. A
// statically linked binary gets no libraries. Libraries loaded with dlopen
// are invisible to ldd and are not included.
//
// The tag is "<repo>:<first 16 hex digits of the SHA-256 of the build
// context>"; the context is a tar written deterministically (sorted paths,
// zero times and owners), so the same binary and libraries give the same
// tag, and an existing tag is reused without building. The image is never
// removed by this package: it is the cache.
func BuildImage(ctx context.Context, binPath string, opts ImageOptions) (Image, error) {
	logger := opts.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	repo := opts.Repo
	if repo == "" {
		repo = DefaultImageRepo
	}
	abs, err := filepath.Abs(binPath)
	if err != nil {
		return Image{}, fmt.Errorf("chaos: image: %w", err)
	}
	buildCtx, err := buildContext(ctx, abs)
	if err != nil {
		return Image{}, err
	}
	sum := sha256.Sum256(buildCtx)
	tag := hex.EncodeToString(sum[:])[:16]
	ref := repo + ":" + tag

	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %w", ErrNoDocker, err)
	}
	defer dc.Close()

	if got, err := dc.ImageInspect(ctx, ref); err == nil {
		logger.Debug("chaos: reusing image", "tag", ref, "id", got.ID)
		return Image{ID: got.ID, Tag: ref}, nil
	} else if !errdefs.IsNotFound(err) {
		return Image{}, fmt.Errorf("chaos: inspect image %s: %w", ref, err)
	}

	provider, err := testcontainers.NewDockerProvider(testcontainers.WithLogger(slogPrintf{logger}))
	if err != nil {
		return Image{}, fmt.Errorf("%w: %w", ErrNoDocker, err)
	}
	defer provider.Close()
	var buildLog bytes.Buffer
	req := &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		ContextArchive: bytes.NewReader(buildCtx),
		Dockerfile:     "Dockerfile",
		Repo:           repo,
		Tag:            tag,
		KeepImage:      true,
		BuildLogWriter: &buildLog,
	}}
	logger.Info("chaos: building image", "tag", ref, "binary", abs, "context_bytes", len(buildCtx))
	if _, err := provider.BuildImage(ctx, req); err != nil {
		return Image{}, fmt.Errorf("chaos: build image %s: %w\n%s", ref, err, buildLog.String())
	}
	logger.Debug("chaos: build output", "tag", ref, "log", buildLog.String())
	got, err := dc.ImageInspect(ctx, ref)
	if err != nil {
		return Image{}, fmt.Errorf("chaos: inspect built image %s: %w", ref, err)
	}
	return Image{ID: got.ID, Tag: ref}, nil
}

// buildContext returns the tar of the Dockerfile and the root filesystem
// described on BuildImage.
func buildContext(ctx context.Context, bin string) ([]byte, error) {
	libs, err := sharedLibraries(ctx, bin)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(bin)
	files := map[string]string{"/bin/" + name: bin} // image path -> host path
	var libDirs []string
	for _, l := range libs {
		files[l] = l
		if d := path.Dir(l); !slices.Contains(libDirs, d) {
			libDirs = append(libDirs, d)
		}
	}
	slices.Sort(libDirs)

	var df strings.Builder
	df.WriteString("FROM scratch\nCOPY rootfs/ /\n")
	if len(libDirs) > 0 {
		fmt.Fprintf(&df, "ENV LD_LIBRARY_PATH=%s\n", strings.Join(libDirs, ":"))
	}
	fmt.Fprintf(&df, "LABEL %s.image=\"1\"\n", LabelManaged)
	fmt.Fprintf(&df, "ENTRYPOINT [%q]\n", "/bin/"+name)

	// Every directory on the way to a file gets an entry, so modes do not
	// depend on the builder's defaults.
	dirs := map[string]bool{"/tmp": true, "/bin": true}
	for p := range files {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tarFile(tw, "Dockerfile", 0o644, []byte(df.String())); err != nil {
		return nil, err
	}
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs" + d + "/", Mode: mode, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("chaos: image context: %w", err)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		real, err := filepath.EvalSymlinks(files[p])
		if err != nil {
			return nil, fmt.Errorf("chaos: image context: %w", err)
		}
		b, err := os.ReadFile(real)
		if err != nil {
			return nil, fmt.Errorf("chaos: image context: %w", err)
		}
		if err := tarFile(tw, "rootfs"+p, 0o755, b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("chaos: image context: %w", err)
	}
	return buf.Bytes(), nil
}

func tarFile(tw *tar.Writer, name string, mode int64, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("chaos: image context: %w", err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("chaos: image context: %w", err)
	}
	return nil
}

// sharedLibraries returns the absolute paths ldd prints for bin: every
// resolved library and the loader. It returns nil for a static binary and
// ErrMissingLibrary when a library cannot be found.
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("chaos: binary: %w", err)
	}
	out, err := exec.CommandContext(ctx, "ldd", bin).CombinedOutput()
	if err != nil {
		s := string(out)
		if strings.Contains(s, "not a dynamic executable") || strings.Contains(s, "statically linked") {
			return nil, nil
		}
		return nil, fmt.Errorf("chaos: ldd %s: %w: %s", bin, err, bytes.TrimSpace(out))
	}
	return parseLdd(out)
}

// parseLdd reads ldd's output. Lines look like
//
//	linux-vdso.so.1 (0x00007ffc...)                  (virtual, skipped)
//	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
//	/lib64/ld-linux-x86-64.so.2 (0x...)              (the loader)
//	libfoo.so.1 => not found
//	statically linked
func parseLdd(out []byte) ([]string, error) {
	var libs, missing []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.Contains(line, "statically linked") {
			continue
		}
		var p string
		if before, after, ok := strings.Cut(line, "=>"); ok {
			after = strings.TrimSpace(after)
			if strings.HasPrefix(after, "not found") {
				missing = append(missing, strings.TrimSpace(before))
				continue
			}
			p = strings.Fields(after + " ")[0]
		} else {
			p = strings.Fields(line)[0]
		}
		if !strings.HasPrefix(p, "/") {
			continue // vdso and other virtual objects
		}
		if !slices.Contains(libs, p) {
			libs = append(libs, p)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrMissingLibrary, strings.Join(missing, ", "))
	}
	return libs, nil
}

// slogPrintf adapts slog to the Printf logger testcontainers wants.
type slogPrintf struct{ log *slog.Logger }

func (s slogPrintf) Printf(format string, args ...any) {
	s.log.Debug("testcontainers: " + strings.TrimSpace(fmt.Sprintf(format, args...)))
}
