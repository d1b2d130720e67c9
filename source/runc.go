package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// Runc is a container of runc (runc://ID), loaded with libcontainer from
// runc's state dir. Docker, containerd and podman mount the overlay before
// runc starts, so the container's rootfs is the merged dir: its upperdir and
// lowerdir come from /proc/self/mountinfo. A rootfs that is no overlay is
// compared in rootfs mode with Base.
type Runc struct {
	ID    string
	Root  string // runc's --root, default /run/runc
	Base  string // image the rootfs was made from (needed unless its lowers are the store's own layers)
	Pause bool
}

func (r Runc) String() string { return "runc://" + r.ID }

func (r Runc) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	root := r.Root
	if root == "" {
		root = "/run/runc"
	}
	c, err := libcontainer.Load(root, r.ID)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, libcontainer.ErrNotExist) {
			return nil, fmt.Errorf("no runc container %q in %s", r.ID, root)
		}
		return nil, fmt.Errorf("runc container %q: %w", r.ID, err)
	}
	cfg := c.Config()
	o := &sourcing.Opened{CreatedBy: strings.Join(bundleArgs(cfg.Labels), " ")}
	upper, lowers, err := overlayOf(cfg.Rootfs, st.LayersDir())
	if err != nil {
		return nil, err
	}
	switch {
	case upper != "":
		o.Changes = diff.Overlay{Upper: upper, Lowers: lowers}
		if r.Base != "" {
			if o.Base, err = st.Lookup(r.Base); err != nil {
				return nil, fmt.Errorf("base %w", err)
			}
		} else if o.Base, err = imageOfLayers(st, lowers); err != nil {
			return nil, err
		}
	case r.Base == "":
		return nil, fmt.Errorf("rootfs %s is not an overlay: %w", cfg.Rootfs, ErrNeedBase)
	default:
		d, err := sourcing.Dir{Root: cfg.Rootfs, Base: r.Base}.Open(ctx, st)
		if err != nil {
			return nil, err
		}
		o.Changes, o.Base = d.Changes, d.Base
	}
	status, err := c.Status()
	if err != nil {
		return nil, err
	}
	if r.Pause && status == libcontainer.Running {
		if err := c.Pause(); err != nil {
			return nil, fmt.Errorf("pause: %w", err)
		}
		o.Close = func() error {
			if err := c.Resume(); err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			return nil
		}
	}
	return o, nil
}

// bundleArgs reads the process args from the bundle's config.json (runc
// records the bundle path as a label; its state keeps no args).
func bundleArgs(labels []string) []string {
	for _, l := range labels {
		if b, ok := strings.CutPrefix(l, "bundle="); ok {
			raw, err := os.ReadFile(filepath.Join(b, "config.json"))
			if err != nil {
				return nil
			}
			var spec struct {
				Process struct{ Args []string } `json:"process"`
			}
			if json.Unmarshal(raw, &spec) == nil {
				return spec.Process.Args
			}
		}
	}
	return nil
}

// ErrNeedBase is returned (wrapped) when a runc container's rootfs does not
// say which image it was made from: the caller must name the base image.
var ErrNeedBase = errors.New("the base image must be given")

// overlayOf finds the overlay mounted at rootfs and returns its upper and
// lowers (top-most first); empty when rootfs is not an overlay mount.
// Relative layer names are taken relative to relTo (see overlayDirs).
func overlayOf(rootfs, relTo string) (string, []string, error) {
	real, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		return "", nil, fmt.Errorf("rootfs %s: %w", rootfs, err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(real))
	if err != nil {
		return "", nil, err
	}
	if len(mounts) == 0 || mounts[len(mounts)-1].FSType != "overlay" {
		return "", nil, nil
	}
	upper, lowers, err := overlayDirs(mounts[len(mounts)-1].VFSOptions, relTo)
	if err != nil {
		return "", nil, fmt.Errorf("rootfs %s: %w", rootfs, err)
	}
	if upper == "" {
		return "", nil, fmt.Errorf("rootfs %s is a read-only overlay: nothing to commit", rootfs)
	}
	return upper, lowers, nil
}

// imageOfLayers finds the store's image whose unpacked layers are exactly
// lowers, as when snap itself prepared the rootfs.
func imageOfLayers(st *store.Store, lowers []string) (*store.Image, error) {
	imgs, err := st.Images()
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		var want []string
		for _, d := range slices.Backward(img.Config.RootFS.DiffIDs) {
			want = append(want, st.LayerPath(d))
		}
		if slices.Equal(want, lowers) {
			return img, nil
		}
	}
	return nil, fmt.Errorf("the rootfs lowers are no image of the store: %w", ErrNeedBase)
}

// overlayDirs reads an overlay's layers from its mount options: lowerdir=
// (colon-separated, the mount(2) way) or one lowerdir+= per lower (the way
// snap and newer tools mount, which lifts the page limit on the options).
// A relative name is relative to the mounter's working directory, which
// mountinfo does not keep: snap mounts its own relative to its store's
// layers (relTo); a name that is not found there is refused, never guessed.
func overlayDirs(options, relTo string) (upper string, lowers []string, err error) {
	abs := func(p string) (string, error) {
		if filepath.IsAbs(p) {
			return p, nil
		}
		q := filepath.Join(relTo, p)
		if _, err := os.Stat(q); err != nil {
			return "", fmt.Errorf("overlay layer %q is named relative to the directory it was mounted from, and is not in %s", p, relTo)
		}
		return q, nil
	}
	for _, opt := range strings.Split(options, ",") {
		key, v, _ := strings.Cut(opt, "=")
		var dirs []string
		switch key {
		case "upperdir", "lowerdir+":
			dirs = []string{v}
		case "lowerdir":
			dirs = strings.Split(v, ":")
		default:
			continue
		}
		for i, d := range dirs {
			if dirs[i], err = abs(d); err != nil {
				return "", nil, err
			}
		}
		if key == "upperdir" {
			upper = dirs[0]
		} else {
			lowers = append(lowers, dirs...)
		}
	}
	return upper, lowers, nil
}
