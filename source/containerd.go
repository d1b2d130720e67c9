package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// DefaultContainerdAddress is containerd's own default socket.
const DefaultContainerdAddress = "/run/containerd/containerd.sock"

// Containerd is a container of containerd (containerd://[NAMESPACE/]ID),
// read through containerd's Go client: the container's snapshot mounts
// give its overlay upper and lowers (a snapshotter that gives a bind mount
// of a whole tree, such as native, is compared in rootfs mode with the
// image), its image comes from containerd's content store, and its task is
// paused for the walk.
type Containerd struct {
	// Namespace is containerd's namespace; empty is "default" (nerdctl's;
	// Kubernetes' containers are in "k8s.io").
	Namespace string
	ID        string
	Pause     bool
	// Address is containerd's gRPC socket; empty: DefaultContainerdAddress.
	Address string
}

func (c Containerd) String() string {
	if c.Namespace == "" {
		return "containerd://" + c.ID
	}
	return "containerd://" + c.Namespace + "/" + c.ID
}

// Errors of the containerd source, wrapped with what they name.
var (
	ErrNoContainer = errors.New("no such container")
	ErrBadSnapshot = errors.New("snapshot mounts refused")
)

// Open loads the container, finds its changes from its snapshot's mounts,
// brings its image into the store (from containerd's content store, once;
// then found by image ID) and pauses its task if it runs. Close resumes the
// task, whatever happened in between, and closes the connection.
func (c Containerd) Open(ctx context.Context, st *store.Store) (o *sourcing.Opened, err error) {
	ns := c.Namespace
	if ns == "" {
		ns = "default"
	}
	addr := c.Address
	if addr == "" {
		addr = DefaultContainerdAddress
	}
	if _, err := os.Stat(addr); err != nil {
		return nil, fmt.Errorf("no containerd at %s: %w", addr, err)
	}
	cl, err := containerd.New(addr)
	if err != nil {
		return nil, fmt.Errorf("containerd at %s is not answering: %w", addr, err)
	}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	ctx = namespaces.WithNamespace(ctx, ns)
	cont, err := loadContainer(ctx, cl, ns, c.ID)
	if err != nil {
		return nil, err
	}
	info, err := cont.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	if info.SnapshotKey == "" {
		return nil, fmt.Errorf("%s has no snapshot (its rootfs is not containerd's): nothing to read", c)
	}
	mounts, err := cl.SnapshotService(info.Snapshotter).Mounts(ctx, info.SnapshotKey)
	if err != nil {
		return nil, fmt.Errorf("%s: snapshot %s of %s: %w", c, info.SnapshotKey, info.Snapshotter, err)
	}
	root, err := snapshotterRoot(ctx, cl, info.Snapshotter)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	ch, err := snapshotChanges(mounts, root)
	if err != nil {
		return nil, fmt.Errorf("%s: snapshotter %s: %w", c, info.Snapshotter, err)
	}
	base, err := containerdImage(ctx, cl, cont, st)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	o = &sourcing.Opened{Base: base}
	switch ch := ch.(type) {
	case diff.Overlay:
		o.Changes = ch
	case diff.Rootfs:
		// The snapshot is a whole tree: compare it with the image's layers
		// as snap unpacks them (the same blobs containerd unpacked).
		if ch.Lowers, err = st.LayerDirs(base); err != nil {
			return nil, fmt.Errorf("%s: image: %w", c, err)
		}
		o.Changes = ch
	}
	if spec, err := cont.Spec(ctx); err == nil && spec.Process != nil {
		o.CreatedBy = strings.Join(spec.Process.Args, " ")
	}
	o.Close = func() error { return cl.Close() }
	if !c.Pause {
		return o, nil
	}
	task, err := cont.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return o, nil // no task: nothing runs, nothing to pause
	}
	if err != nil {
		return nil, fmt.Errorf("%s: task: %w", c, err)
	}
	status, err := task.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: task: %w", c, err)
	}
	if status.Status != containerd.Running {
		return o, nil
	}
	// Not cancellable: a signal while containerd pauses would lose its
	// answer, and with it the resume; the walk stops on ctx instead.
	if err := task.Pause(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("%s: pause: %w", c, err)
	}
	o.Close = func() error {
		// Resume even when the commit failed or was cancelled.
		err := task.Resume(context.WithoutCancel(ctx))
		cl.Close()
		if err != nil {
			return fmt.Errorf("%s: resume: %w", c, err)
		}
		return nil
	}
	return o, nil
}

// loadContainer loads id in ns, saying which of the two is missing.
func loadContainer(ctx context.Context, cl *containerd.Client, ns, id string) (containerd.Container, error) {
	cont, err := cl.LoadContainer(ctx, id)
	if err == nil {
		return cont, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("containerd container %s/%s: %w", ns, id, err)
	}
	if all, lerr := cl.NamespaceService().List(ctx); lerr == nil && !slices.Contains(all, ns) {
		return nil, fmt.Errorf("no containerd namespace %q: %w", ns, ErrNoContainer)
	}
	return nil, fmt.Errorf("no containerd container %q in namespace %q: %w", id, ns, ErrNoContainer)
}

// snapshotterRoot is the directory the snapshotter keeps its snapshots in:
// what it exports as its root, else, for a built-in snapshotter that
// exports none (native), the root containerd gives each of its plugins,
// beside the content store's.
func snapshotterRoot(ctx context.Context, cl *containerd.Client, name string) (string, error) {
	resp, err := cl.IntrospectionService().Plugins(ctx, []string{`type==io.containerd.snapshotter.v1`, `type==io.containerd.content.v1,id==content`})
	if err != nil {
		return "", fmt.Errorf("introspection: %w", err)
	}
	var root, contentRoot string
	found := false
	for _, p := range resp.Plugins {
		switch {
		case p.Type == "io.containerd.snapshotter.v1" && p.ID == name:
			found, root = true, p.Exports["root"]
		case p.Type == "io.containerd.content.v1":
			contentRoot = p.Exports["root"]
		}
	}
	if !found {
		return "", fmt.Errorf("snapshotter %q is not one of containerd's own; snap cannot tell where it keeps its snapshots", name)
	}
	if root == "" && contentRoot != "" && filepath.Base(contentRoot) == "io.containerd.content.v1.content" {
		root = filepath.Join(filepath.Dir(contentRoot), "io.containerd.snapshotter.v1."+name)
	}
	if root == "" {
		return "", fmt.Errorf("snapshotter %q does not say where it keeps its snapshots", name)
	}
	if _, err := os.Stat(root); err != nil {
		return "", fmt.Errorf("snapshotter %q keeps its snapshots in %s, which is not on this host (a remote containerd?): %w", name, root, err)
	}
	return root, nil
}

// snapshotChanges turns a snapshot's mounts into a walker: an overlay
// into diff.Overlay (upper and lowers), a bind mount of a whole tree into
// diff.Rootfs (without lowers: the caller sets them). Every directory the
// mounts name must be a snapshot of the snapshotter, below root/snapshots
// once symlinks are resolved, and each option must name one thing: an
// option that smuggles a second one in (a comma, a colon in an upperdir)
// is refused, as a snapshotter that names a directory elsewhere would
// otherwise make snap commit it.
func snapshotChanges(mounts []mount.Mount, root string) (diff.Walker, error) {
	if len(mounts) != 1 {
		return nil, fmt.Errorf("%d mounts for one snapshot: %w", len(mounts), ErrBadSnapshot)
	}
	m := mounts[0]
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	inside := func(p string) (string, error) {
		if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsAny(p, ",:") {
			return "", fmt.Errorf("%q is not a plain absolute path: %w", p, ErrBadSnapshot)
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", fmt.Errorf("snapshot dir: %w", err)
		}
		rel, err := filepath.Rel(realRoot, real)
		if err != nil || !filepath.IsLocal(rel) || !strings.HasPrefix(rel, "snapshots"+string(filepath.Separator)) {
			return "", fmt.Errorf("%s is not a snapshot in %s: %w", p, root, ErrBadSnapshot)
		}
		return real, nil
	}
	switch m.Type {
	case "overlay":
		var upper string
		var lowers []string
		seen := map[string]bool{}
		for _, opt := range m.Options {
			key, v, _ := strings.Cut(opt, "=")
			if strings.Contains(v, ",") {
				return nil, fmt.Errorf("overlay option %q holds more than one: %w", opt, ErrBadSnapshot)
			}
			switch key {
			case "upperdir", "lowerdir", "workdir":
				if seen[key] {
					return nil, fmt.Errorf("overlay option %s given twice: %w", key, ErrBadSnapshot)
				}
				seen[key] = true
			default:
				continue
			}
			switch key {
			case "upperdir":
				if upper, err = inside(v); err != nil {
					return nil, err
				}
			case "lowerdir":
				for _, l := range strings.Split(v, ":") {
					real, err := inside(l)
					if err != nil {
						return nil, err
					}
					lowers = append(lowers, real)
				}
			}
		}
		if upper == "" {
			return nil, fmt.Errorf("the snapshot is a read-only view: nothing to commit")
		}
		return diff.Overlay{Upper: upper, Lowers: lowers}, nil
	case "bind", "rbind":
		for _, opt := range m.Options {
			if strings.Contains(opt, ",") {
				return nil, fmt.Errorf("bind option %q holds more than one: %w", opt, ErrBadSnapshot)
			}
		}
		if slices.Contains(m.Options, "ro") {
			return nil, fmt.Errorf("the snapshot is a read-only view: nothing to commit")
		}
		src, err := inside(m.Source)
		if err != nil {
			return nil, err
		}
		return diff.Rootfs{Root: src}, nil
	}
	return nil, fmt.Errorf("a %q mount: snap reads overlay and bind mounts of snapshots", m.Type)
}

// containerdImage finds the container's image in the store by ID (its
// config's digest), else copies it there from containerd's content store:
// the config and each layer blob as they are, verified against the
// manifest's digests and the config's diff_ids, so the commit chains onto
// the image's history and layers like a docker commit does.
func containerdImage(ctx context.Context, cl *containerd.Client, cont containerd.Container, st *store.Store) (*store.Image, error) {
	img, err := cont.Image(ctx)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cs := cl.ContentStore()
	m, err := images.Manifest(ctx, cs, img.Target(), platforms.Default())
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Name(), err)
	}
	if err := store.ValidateDigest(m.Config.Digest); err != nil {
		return nil, fmt.Errorf("image %s config: %w", img.Name(), err)
	}
	if have, err := st.Lookup(m.Config.Digest.String()); err == nil {
		return have, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	config, err := content.ReadBlob(ctx, cs, m.Config)
	if err != nil {
		return nil, fmt.Errorf("image %s config: %w", img.Name(), err)
	}
	if got := digest.FromBytes(config); got != m.Config.Digest {
		return nil, fmt.Errorf("image %s: containerd's config blob is %s, not %s", img.Name(), got, m.Config.Digest)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, fmt.Errorf("image %s config: %w", img.Name(), err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: %d layers for %d diff_ids", img.Name(), len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	lease, err := st.Lease(ctx) // from the first layer until Put reaches them
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	layers := make([]ocispec.Descriptor, len(m.Layers))
	for i, l := range m.Layers {
		if layers[i], err = copyBlob(ctx, cs, st, l, cfg.RootFS.DiffIDs[i]); err != nil {
			return nil, fmt.Errorf("image %s layer %s: %w", img.Name(), l.Digest, err)
		}
	}
	return st.Put(config, layers, nil)
}

func copyBlob(ctx context.Context, cs content.Store, st *store.Store, l ocispec.Descriptor, diffID digest.Digest) (ocispec.Descriptor, error) {
	if err := store.ValidateDigest(l.Digest); err != nil {
		return ocispec.Descriptor{}, err
	}
	ra, err := cs.ReaderAt(ctx, l)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return ocispec.Descriptor{}, fmt.Errorf("not in containerd's content store (discarded after unpacking?): %w", err)
		}
		return ocispec.Descriptor{}, err
	}
	defer ra.Close()
	return st.AddLayerBlob(ctx, content.NewReader(ra), l, diffID)
}
