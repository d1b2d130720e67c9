package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"snap/compression"
	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// Docker is a container of a Docker Engine (docker://NAME) on this host,
// on any storage driver snap reads (Drivers): inspect gives its command and
// its layers (overlay2's and fuse-overlayfs' upper and lowers), or the
// engine's data root where docker's layer store records them (vfs, btrfs,
// legacy overlay); pause and unpause go through the engine too.
type Docker struct {
	Name  string
	Pause bool
	Host  string // the engine, as DOCKER_HOST names it; empty: the default socket
}

func (d Docker) String() string { return "docker://" + d.Name }

// Open inspects the container, brings its image into the store (exported
// from the engine once, then found by image ID, so history and diff_ids
// chain onto docker's), and pauses the container if it runs.
func (d Docker) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	eng, err := NewEngine(d.Host)
	if err != nil {
		return nil, err
	}
	c, err := eng.Inspect(ctx, d.Name)
	if err != nil {
		return nil, err
	}
	var changes diff.Walker
	if eng.Libpod() {
		changes, err = libpodWalker(c)
	} else {
		info := &Info{}
		if needsDataRoot(c.GraphDriver.Name) {
			if info, err = eng.Info(ctx); err != nil {
				return nil, err
			}
		}
		changes, err = dockerWalker(info, c)
	}
	if err != nil {
		return nil, err
	}
	var cfg dockerspec.DockerOCIImageConfig
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		return nil, fmt.Errorf("container config: %w", err)
	}
	base, err := dockerImage(ctx, eng, st, c.Image)
	if err != nil {
		return nil, err
	}
	o := &sourcing.Opened{
		Changes:   changes,
		Base:      base,
		CreatedBy: strings.Join(cfg.Cmd, " "),
		Config:    &cfg,
	}
	if eng.Libpod() {
		podmanOpened(o, c)
	}
	if d.Pause && c.State.Running && !c.State.Paused {
		// Not cancellable: a signal while the engine pauses would lose its
		// answer, and with it the unpause; the walk stops on ctx instead.
		if err := eng.Pause(context.WithoutCancel(ctx), c.ID); err != nil {
			return nil, fmt.Errorf("pause: %w", err)
		}
		o.Close = func() error {
			// Resume even when the commit was cancelled.
			if err := eng.Unpause(context.WithoutCancel(ctx), c.ID); err != nil {
				return fmt.Errorf("unpause: %w", err)
			}
			return nil
		}
	}
	return o, nil
}

// dockerImage finds the engine's image in the store by ID, exporting it from
// the engine the first time.
func dockerImage(ctx context.Context, eng *Engine, st *store.Store, id string) (*store.Image, error) {
	img, err := st.Lookup(id)
	if err == nil {
		return img, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(eng.SaveImage(ctx, id, pw)) }()
	imgs, err := st.LoadArchive(ctx, pr, compression.Gzip)
	pr.CloseWithError(err)
	if err != nil {
		return nil, fmt.Errorf("image %s from the engine: %w", id, err)
	}
	for _, img := range imgs {
		if img.ID.String() == id {
			return img, nil
		}
	}
	return nil, fmt.Errorf("image %s: the engine exported something else", id)
}

// LoadFromStore loads an image of the store into the engine, as `docker
// load` of its `snap save` would.
func (e *Engine) LoadFromStore(ctx context.Context, st *store.Store, img *store.Image) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(st.SaveDockerArchive(ctx, pw, []*store.Image{img})) }()
	err := e.LoadImage(ctx, pr)
	pr.CloseWithError(err)
	return err
}

// overlay2 is the walker of an overlay2 container: docker's LowerDir names
// the container's init layer ("<id>-init/diff") first, then the image's.
func overlay2(upper, lowerDir string) diff.Overlay {
	lowers := strings.Split(lowerDir, ":")
	o := diff.Overlay{Upper: upper, Lowers: lowers}
	if strings.HasSuffix(filepath.Dir(lowers[0]), "-init") {
		o.Init = 1
	}
	return o
}

// libpodWalker is the walker of a podman container: its driver is called
// "overlay" and records its dirs as docker's overlay2 does (docker's own
// legacy "overlay" is another thing, read from docker's layer store).
func libpodWalker(c *ContainerJSON) (diff.Walker, error) {
	if c.GraphDriver.Name != "overlay" {
		return nil, fmt.Errorf("podman container uses the %q storage driver: %w (snap reads podman's overlay)", c.GraphDriver.Name, ErrUnsupportedDriver)
	}
	upper, lowers := c.GraphDriver.Data["UpperDir"], c.GraphDriver.Data["LowerDir"]
	if upper == "" {
		return nil, fmt.Errorf("podman container has no overlay upper dir")
	}
	if _, err := os.Lstat(upper); err != nil {
		return nil, fmt.Errorf("upper dir %s: %w", upper, remoteIfMissing(err))
	}
	o := diff.Overlay{Upper: upper}
	if lowers != "" {
		o.Lowers = strings.Split(lowers, ":")
	}
	return o, nil
}
