package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// SweepOptions choose what Sweep removes.
type SweepOptions struct {
	// RunID, if set, selects one run's objects whether or not the process
	// that made them is alive. If empty, Sweep selects the objects of every
	// run whose owner process (LabelOwner) is gone, so it is safe while
	// other runs are in progress.
	RunID string
	// Images also removes node images built by BuildImage (label
	// "meta.chaos.image") that no container uses, except those named in
	// KeepImages (tags or ids). Images are otherwise kept as the cache.
	Images     bool
	KeepImages []string
	Log        *slog.Logger // nil discards
}

// SweepResult names what Sweep removed.
type SweepResult struct {
	Containers []string
	Networks   []string
	Volumes    []string
	Images     []string
}

// Sweep removes containers (with their anonymous volumes), networks and
// volumes labelled LabelManaged that opts selects: the leftovers of runs
// that were killed before they could clean up; and, with opts.Images,
// unused node images. Data and logs on the host are never touched.
func Sweep(ctx context.Context, opts SweepOptions) (SweepResult, error) {
	logger := opts.Log
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return SweepResult{}, fmt.Errorf("%w: %w", ErrNoDocker, err)
	}
	defer dc.Close()

	filter := make(client.Filters).Add("label", LabelManaged)
	if opts.RunID != "" {
		filter = make(client.Filters).Add("label", LabelRun+"="+opts.RunID)
	}
	selected := func(labels map[string]string) bool {
		if _, ok := labels[LabelManaged]; !ok {
			return false
		}
		if opts.RunID != "" {
			return labels[LabelRun] == opts.RunID
		}
		return !ownerAlive(labels[LabelOwner])
	}

	var res SweepResult
	var errs []error
	// sweep removes one object of a kind (what) if opts selects it by its
	// labels; one already gone counts as removed.
	sweep := func(what, name string, labels map[string]string, remove func() error) bool {
		if !selected(labels) {
			return false
		}
		if err := remove(); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("chaos: sweep: remove %s %s: %w", what, name, err))
			return false
		}
		logger.Info("chaos: swept "+what, "name", name, "run", labels[LabelRun])
		return true
	}
	ctrs, err := dc.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		return res, fmt.Errorf("chaos: sweep: list containers: %w", err)
	}
	for _, ct := range ctrs.Items {
		name := ct.ID[:12]
		if len(ct.Names) > 0 {
			name = strings.TrimPrefix(ct.Names[0], "/")
		}
		if sweep("container", name, ct.Labels, func() error {
			_, err := dc.ContainerRemove(ctx, ct.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
			return err
		}) {
			res.Containers = append(res.Containers, name)
		}
	}
	nets, err := dc.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		return res, errors.Join(append(errs, fmt.Errorf("chaos: sweep: list networks: %w", err))...)
	}
	for _, nw := range nets.Items {
		if sweep("network", nw.Name, nw.Labels, func() error {
			_, err := dc.NetworkRemove(ctx, nw.ID, client.NetworkRemoveOptions{})
			return err
		}) {
			res.Networks = append(res.Networks, nw.Name)
		}
	}
	vols, err := dc.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil {
		return res, errors.Join(append(errs, fmt.Errorf("chaos: sweep: list volumes: %w", err))...)
	}
	for _, v := range vols.Items {
		if sweep("volume", v.Name, v.Labels, func() error {
			_, err := dc.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
			return err
		}) {
			res.Volumes = append(res.Volumes, v.Name)
		}
	}
	if opts.Images {
		imgs, err := dc.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("label", LabelManaged+".image")})
		if err != nil {
			return res, errors.Join(append(errs, fmt.Errorf("chaos: sweep: list images: %w", err))...)
		}
		for _, im := range imgs.Items {
			if slices.Contains(opts.KeepImages, im.ID) || slices.ContainsFunc(im.RepoTags, func(tag string) bool {
				return slices.Contains(opts.KeepImages, tag)
			}) {
				continue
			}
			// Not forced: the engine refuses to remove an image a
			// container (of a live run) still uses, which is what we want.
			if _, err := dc.ImageRemove(ctx, im.ID, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
				if !errdefs.IsNotFound(err) && !errdefs.IsConflict(err) {
					errs = append(errs, fmt.Errorf("chaos: sweep: remove image %s: %w", im.ID, err))
				}
				continue
			}
			logger.Info("chaos: swept image", "id", im.ID, "tags", im.RepoTags)
			res.Images = append(res.Images, im.ID)
		}
	}
	return res, errors.Join(errs...)
}
