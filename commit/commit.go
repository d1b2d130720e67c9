// Package commit turns a container's changes into a new image, the way
// `docker commit` does: Commit(ctx, st, src, opts) opens the source (a
// sourcing.Source, as source.Parse gives one; a container is paused), walks
// it with package diff, writes the layer into the store, builds config,
// history and manifest, tags, and closes the source again.
package commit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	units "github.com/docker/go-units"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// Options are docker commit's flags.
type Options struct {
	Author      string
	Message     string
	Changes     []string // Dockerfile instructions, as -c
	Compression compression.Compression
	// SourceDateEpoch fixes created and clamps mtimes: the same tree then
	// gives the same image ID.
	SourceDateEpoch *time.Time
	// Squash writes one layer holding the whole filesystem: the image the
	// commit makes without it, flattened (see diff.Overlay.Whole); the
	// base's history stays, each entry marked empty.
	Squash bool
	// Tag is REPO[:TAG]; empty leaves the image untagged.
	Tag string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, if set, receives a status line every 200 ms while the layer
	// is written ("\r"-refreshed, for a terminal).
	Progress io.Writer
	// Exclude filters the layer (diff.Filter): omitted paths never enter
	// it, truncated files are written empty. With Squash, what the base
	// holds under an omitted path stays as the base has it: the filtered
	// layer is flattened onto the base's layers.
	Exclude []diff.Rule
	// CreatedBy, when set, is the history entry's created_by instead of
	// the source's (a container's command).
	CreatedBy string
	// Annotations go on the new image's manifest; the image ID (the
	// config's digest) does not depend on them.
	Annotations map[string]string
}

// Commit writes a new image from src into st and returns it.
func Commit(ctx context.Context, st *store.Store, src sourcing.Source, opts Options) (img *store.Image, err error) {
	tags, err := opts.tags()
	if err != nil {
		return nil, err
	}
	opts.Compression = opts.layerCompression()
	rules, err := diff.CompileRules(opts.Exclude)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", src, err)
	}
	// The lease spans the whole write: the layer blob is unreachable from
	// the index until Put tags the image, and a prune in between would take it.
	lease, err := st.Lease(ctx)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", src, err)
	}
	defer lease.Release()
	o, err := src.Open(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", src, err)
	}
	// The source is released (a paused container resumed) once its layer
	// is written, before the image is stored: the container runs again as
	// soon as it can, and a resume that fails leaves no image tagged.
	closed := false
	release := func() error {
		if closed || o.Close == nil {
			return nil
		}
		closed = true
		return o.Close()
	}
	defer func() {
		if cerr := release(); cerr != nil && err == nil {
			err = fmt.Errorf("commit %s: %w", src, cerr)
		}
	}()
	img, err = build(ctx, st, o, opts, rules, tags, release)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", src, err)
	}
	return img, nil
}

func build(ctx context.Context, st *store.Store, o *sourcing.Opened, opts Options, rules *diff.Rules, tags []string, release func() error) (*store.Image, error) {
	created := opts.createdAt()
	var cfg dockerspec.DockerOCIImage
	var layers []ocispec.Descriptor
	if o.Base != nil {
		if err := json.Unmarshal(o.Base.RawConfig, &cfg); err != nil {
			return nil, fmt.Errorf("base config: %w", err)
		}
		layers = append(layers, o.Base.Manifest.Layers...)
	} else {
		cfg.Architecture, cfg.OS = runtime.GOARCH, runtime.GOOS
		cfg.RootFS.Type = "layers"
	}
	if o.Config != nil {
		cfg.Config = *o.Config
	}
	if err := ApplyChanges(&cfg.Config, opts.Changes); err != nil {
		return nil, err
	}
	// A filtered walker is no Squasher (see diff.Filter): a squash with
	// rules takes the flatten path below.
	changes := diff.Filter(o.Changes, rules)
	sq, whole := changes.(sourcing.Squasher)
	if opts.Squash && whole {
		changes = sq.Whole()
	}
	layer, res, err := writeLayer(ctx, st, changes, opts)
	if err != nil {
		return nil, err
	}
	if err := release(); err != nil {
		return nil, err
	}
	if opts.Squash {
		if !whole {
			// The general way, for a walker that cannot see the whole
			// filesystem: its layer, written above, flattened onto the
			// base's layers. The same result by definition (a squash is
			// the normal commit flattened), at the cost of unpacking it.
			if layer, res, err = flatten(ctx, st, o.Base, layer, res.DiffID, opts); err != nil {
				return nil, fmt.Errorf("squash: %w", err)
			}
		}
		layers = nil
		cfg.RootFS.DiffIDs = nil
		for i := range cfg.History {
			cfg.History[i].EmptyLayer = true // kept, but its layers are squashed into the new one
		}
	}
	empty := layer == nil
	if !empty {
		layers = append(layers, *layer)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, res.DiffID)
	}
	cfg.Created = &created
	cfg.Author = opts.Author
	createdBy := o.CreatedBy
	if opts.CreatedBy != "" {
		createdBy = opts.CreatedBy
	}
	cfg.History = append(cfg.History, ocispec.History{
		Created:    &created,
		Author:     opts.Author,
		CreatedBy:  createdBy,
		Comment:    opts.Message,
		EmptyLayer: empty,
	})
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	imgs, err := st.PutAll(ctx, []store.NewImage{{Config: raw, Layers: layers, Tags: tags, Annotations: opts.Annotations}})
	if err != nil {
		return nil, err
	}
	return imgs[0], nil
}

// writeLayer streams the changes into a new blob. A walk that yields
// nothing gives no layer at all (docker's empty_layer).
func writeLayer(ctx context.Context, st *store.Store, src diff.Walker, opts Options) (*ocispec.Descriptor, diff.Result, error) {
	bw, err := st.NewBlob()
	if err != nil {
		return nil, diff.Result{}, err
	}
	defer bw.Abort()
	dopts := diff.Options{Compression: opts.Compression, SourceDateEpoch: opts.SourceDateEpoch}
	if opts.Progress != nil {
		var files, bytes atomic.Int64
		dopts.Progress = func(e int, b int64) { files.Store(int64(e)); bytes.Store(b) }
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					fmt.Fprint(opts.Progress, "\r\033[K")
					return
				case <-t.C:
					fmt.Fprintf(opts.Progress, "\r\033[Kcommitting: %d files, %s", files.Load(), units.HumanSize(float64(bytes.Load())))
				}
			}
		}()
	}
	res, err := diff.WriteLayer(ctx, bw, src, dopts)
	if err != nil {
		return nil, res, err
	}
	if res.Entries == 0 {
		return nil, res, nil
	}
	// The blob writer is the blob's one hasher and counter.
	d, err := bw.Commit()
	if err != nil {
		return nil, res, err
	}
	return &ocispec.Descriptor{
		MediaType:   res.MediaType,
		Digest:      d,
		Size:        bw.Size(),
		Annotations: map[string]string{store.AnnotationContentSize: strconv.FormatInt(res.ContentSize, 10), store.AnnotationUncompressedSize: strconv.FormatInt(res.UncompressedSize, 10)},
	}, res, nil
}

// flatten writes the one layer holding base's layers with layer (diffID; nil:
// no changes) on top: the layers unpacked as the store caches them, walked
// as one merged view.
func flatten(ctx context.Context, st *store.Store, base *store.Image, layer *ocispec.Descriptor, diffID digest.Digest, opts Options) (*ocispec.Descriptor, diff.Result, error) {
	var dirs []string // top-most first
	if layer != nil {
		top, err := st.LayerDir(*layer, diffID)
		if err != nil {
			return nil, diff.Result{}, err
		}
		dirs = append(dirs, top)
	}
	if base != nil {
		lowers, err := st.LayerDirs(base)
		if err != nil {
			return nil, diff.Result{}, err
		}
		dirs = append(dirs, lowers...)
	}
	if len(dirs) == 0 {
		return nil, diff.Result{}, nil
	}
	return writeLayer(ctx, st, diff.Overlay{Upper: dirs[0], Lowers: dirs[1:]}.Whole(), opts)
}
