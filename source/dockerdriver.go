package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"snap/diff"
)

var (
	// ErrRemoteEngine: the engine's data root is not on this host (the engine
	// is reached over the network, or through a socket from elsewhere), and
	// snap reads a container's files, not a stream from the engine.
	ErrRemoteEngine = errors.New("a remote engine: snap reads the container's layers from the engine's data root, which must be on this host (DOCKER_HOST=unix://...)")
	// ErrUnsupportedDriver: the container's storage driver keeps its layers
	// in a form snap does not read.
	ErrUnsupportedDriver = errors.New("unsupported storage driver")
	// ErrLayerStore: docker's layer store holds something it never writes
	// (a bad id, a symlink, a FIFO).
	ErrLayerStore = errors.New("docker's layer store is not as docker writes it")
)

// Drivers lists the storage drivers docker:// reads, as docker names them.
var Drivers = []string{"overlay2", "overlay", "fuse-overlayfs", "vfs", "btrfs"}

// rootfsDirs are the drivers whose layers are plain directories holding a
// whole filesystem each (vfs copies, btrfs snapshots): docker's naive
// differ compares the container's with its init layer's, and snap does the
// same in rootfs mode.
var rootfsDirs = map[string]string{
	"vfs":   "vfs/dir",
	"btrfs": "btrfs/subvolumes",
}

// needsDataRoot: the driver's layers are found from the engine's data
// root, not from inspect alone.
func needsDataRoot(driver string) bool {
	return driver != "overlay2" && driver != "fuse-overlayfs"
}

// containerIDRe is an engine's full container ID; it becomes a path.
var containerIDRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// layerIDRe is a graph driver's layer id as docker's layer store records
// it (64 random hex digits, "-init" for the init layer): a plain name, no
// dots, no slashes, before it becomes a path.
var layerIDRe = regexp.MustCompile(`^[0-9a-zA-Z][0-9a-zA-Z_-]{0,127}$`)

// dockerWalker gives the change-walker for container c of an engine whose
// data root and driver info gives.
func dockerWalker(info *Info, c *ContainerJSON) (diff.Walker, error) {
	driver := c.GraphDriver.Name
	switch driver {
	case "overlay2", "fuse-overlayfs":
		// Both keep a layer's own files in its diff dir and list the init
		// layer first among the lowers: the upper is the container's change.
		format := diff.FormatOverlay
		if driver == "fuse-overlayfs" {
			format = diff.FormatFuseOverlayfs
		}
		upper, lowers := c.GraphDriver.Data["UpperDir"], c.GraphDriver.Data["LowerDir"]
		if upper == "" {
			return nil, fmt.Errorf("%s container has no upper dir", driver)
		}
		if _, err := os.Lstat(upper); err != nil {
			return nil, fmt.Errorf("upper dir %s: %w", upper, remoteIfMissing(err))
		}
		o := overlay2(upper, lowers)
		if lowers == "" {
			o.Lowers = nil
		}
		if driver == "fuse-overlayfs" {
			// Its upper's own markers are read by Walk alone; a squash
			// takes commit's general way (the layer, flattened).
			return noWhole{diff.Overlay{Upper: o.Upper, Lowers: o.Lowers, Init: o.Init, Format: format}}, nil
		}
		return o, nil
	case "overlay":
		return legacyOverlay(info, c)
	}
	sub, ok := rootfsDirs[driver]
	if !ok {
		return nil, fmt.Errorf("container uses the %q storage driver: %w (snap reads %s)", driver, ErrUnsupportedDriver, strings.Join(Drivers, ", "))
	}
	root, rw, err := openRWLayer(info, c)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	mount, err := layerDir(root, path.Join(sub, rw.mountID))
	if err != nil {
		return nil, err
	}
	init, err := layerDir(root, path.Join(sub, rw.initID))
	if err != nil {
		return nil, err
	}
	return naiveDiff{r: diff.Rootfs{Root: filepath.Join(info.DockerRootDir, mount), Lowers: []string{filepath.Join(info.DockerRootDir, init)}}}, nil
}

// naiveDiff is the container's layer of a driver docker diffs naively (its
// whole filesystem against the init layer's). The layer is snap's (opaque
// markers, hardlinks kept whole); snap diff lists it as docker diff does.
//
// It is no Squasher: the container's directory holds docker's init stubs
// (/etc/hosts, /.dockerenv...), which a squash must not; commit squashes it
// its general way, the layer flattened onto the image's.
type naiveDiff struct{ r diff.Rootfs }

func (n naiveDiff) Walk(ctx context.Context, fn func(diff.Change) error) error {
	return n.r.Walk(ctx, fn)
}

// Merged is docker diff's listing of the same comparison.
func (n naiveDiff) Merged() diff.Walker { return n.r.Merged() }

// noWhole is an overlay walker that does not squash by itself (its Whole
// does not know fuse-overlayfs' markers): commit flattens its layer.
type noWhole struct{ o diff.Overlay }

func (n noWhole) Walk(ctx context.Context, fn func(diff.Change) error) error {
	return n.o.Walk(ctx, fn)
}

// Merged is docker diff's listing.
func (n noWhole) Merged() diff.Walker { return n.o.Merged() }

// legacyOverlay: the overlay driver copies the init layer's upper into the
// container's when it creates it, and docker's naive differ compares the
// container's merged view with the init layer's. The same comparison, read
// from the uppers: the container's upper over the init layer's upper over
// the image's root, against the init layer's upper over the image's root.
func legacyOverlay(info *Info, c *ContainerJSON) (diff.Walker, error) {
	upper, lower := c.GraphDriver.Data["UpperDir"], c.GraphDriver.Data["LowerDir"]
	if upper == "" || lower == "" {
		return nil, fmt.Errorf("overlay container has no upper or lower dir")
	}
	root, rw, err := openRWLayer(info, c)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	init, err := layerDir(root, path.Join("overlay", rw.initID, "upper"))
	if err != nil {
		return nil, err
	}
	return diff.Merged{Upper: upper, Lowers: []string{filepath.Join(info.DockerRootDir, init), lower}}, nil
}

// rwLayer is what docker's layer store records of a container's layer.
type rwLayer struct {
	mountID, initID string
}

// openRWLayer reads the container's mount-id and init-id from
// <DockerRootDir>/image/<driver>/layerdb/mounts/<container>/, beneath the
// data root (never through a symlink out of it), and returns the data root
// opened for the caller's further lookups.
func openRWLayer(info *Info, c *ContainerJSON) (*os.Root, rwLayer, error) {
	if !containerIDRe.MatchString(c.ID) {
		return nil, rwLayer{}, fmt.Errorf("container id %q: %w", c.ID, ErrLayerStore)
	}
	if info.DockerRootDir == "" || !filepath.IsAbs(info.DockerRootDir) {
		return nil, rwLayer{}, fmt.Errorf("engine data root %q: %w", info.DockerRootDir, ErrRemoteEngine)
	}
	root, err := os.OpenRoot(info.DockerRootDir)
	if err != nil {
		return nil, rwLayer{}, fmt.Errorf("engine data root %s: %w", info.DockerRootDir, remoteIfMissing(err))
	}
	dir := path.Join("image", c.GraphDriver.Name, "layerdb/mounts", c.ID)
	if _, err := root.Lstat(dir); err != nil {
		root.Close()
		return nil, rwLayer{}, fmt.Errorf("container %.12s in %s: %w", c.ID, filepath.Join(info.DockerRootDir, dir), remoteIfMissing(err))
	}
	var rw rwLayer
	for _, f := range []struct {
		name string
		id   *string
	}{{"mount-id", &rw.mountID}, {"init-id", &rw.initID}} {
		id, err := readLayerID(root, path.Join(dir, f.name))
		if err != nil {
			root.Close()
			return nil, rwLayer{}, fmt.Errorf("%s: %w", filepath.Join(info.DockerRootDir, dir, f.name), err)
		}
		*f.id = id
	}
	return root, rw, nil
}

// readLayerID reads one of the layer store's id files: a small regular
// file holding a plain name. A symlink, a FIFO or a device is refused
// before it is opened (a FIFO would block the read, a symlink could lead
// anywhere) and checked again once open.
func readLayerID(root *os.Root, name string) (string, error) {
	fi, err := root.Lstat(name)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("a %v, not a regular file: %w", fi.Mode().Type(), ErrLayerStore)
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("a %v, not a regular file: %w", fi.Mode().Type(), ErrLayerStore)
	}
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !layerIDRe.MatchString(id) {
		return "", fmt.Errorf("layer id %q: %w", trimQuote(id), ErrLayerStore)
	}
	return id, nil
}

// layerDir checks that rel, beneath the data root, is a directory and no
// symlink, and returns it.
func layerDir(root *os.Root, rel string) (string, error) {
	fi, err := root.Lstat(rel)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", rel, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("layer %s is a %v, not a directory: %w", rel, fi.Mode().Type(), ErrLayerStore)
	}
	return rel, nil
}

// remoteIfMissing: a path the engine names that this host does not have
// means the engine keeps its data elsewhere.
func remoteIfMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("not on this host: %w", ErrRemoteEngine)
	}
	return err
}

func trimQuote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
