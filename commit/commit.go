// Package commit turns a container's changes into a new image, the way
// `docker commit` does: Commit(ctx, st, src, opts) opens the source (pausing
// a container), walks it with package diff, writes the layer into the store,
// builds config, history and manifest, tags, and closes the source again.
package commit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	units "github.com/docker/go-units"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/diff"
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
	// Squash writes one layer holding the whole filesystem.
	Squash bool
	// Tag is REPO[:TAG]; empty leaves the image untagged.
	Tag string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, if set, receives a status line every 200 ms while the layer
	// is written ("\r"-refreshed, for a terminal).
	Progress io.Writer
}

// Opened is a source ready to be walked.
type Opened struct {
	Changes diff.Source
	// Diff, if set, lists the changes as `docker diff` does (snap diff);
	// otherwise Changes does.
	Diff diff.Source
	// Whole yields the complete filesystem, for --squash.
	Whole diff.Source
	// Base is the image the changes apply to; nil for none.
	Base *store.Image
	// CreatedBy goes into the history entry (a container's command).
	CreatedBy string
	// Config, when set, replaces the base's config before -c applies: docker
	// commit starts from the container's own config (its command, env...).
	Config *dockerspec.DockerOCIImageConfig
	// Close releases the source (resumes a paused container). It is called
	// on every path.
	Close func() error
}

// ErrNoWhole is returned for a squash of a source that cannot give its
// whole filesystem.
var ErrNoWhole = errors.New("squash: this source cannot give its whole filesystem")

// Source is something a commit reads: a container or a directory.
type Source interface {
	Open(ctx context.Context, st *store.Store) (*Opened, error)
	String() string
}

// Commit writes a new image from src into st and returns it.
func Commit(ctx context.Context, st *store.Store, src Source, opts Options) (img *store.Image, err error) {
	tags, err := opts.tags()
	if err != nil {
		return nil, err
	}
	opts.Compression = opts.layerCompression()
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
	img, err = build(ctx, st, o, opts, tags, release)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", src, err)
	}
	return img, nil
}

func build(ctx context.Context, st *store.Store, o *Opened, opts Options, tags []string, release func() error) (*store.Image, error) {
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
	changes := o.Changes
	if opts.Squash {
		if o.Whole == nil {
			return nil, ErrNoWhole
		}
		changes = o.Whole
		layers = nil
		cfg.RootFS.DiffIDs = nil
		for i := range cfg.History {
			cfg.History[i].EmptyLayer = true // kept, but its layers are squashed into the new one
		}
	}
	layer, res, err := writeLayer(ctx, st, changes, opts)
	if err != nil {
		return nil, err
	}
	if err := release(); err != nil {
		return nil, err
	}
	empty := layer == nil
	if !empty {
		layers = append(layers, *layer)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, res.DiffID)
	}
	cfg.Created = &created
	cfg.Author = opts.Author
	cfg.History = append(cfg.History, ocispec.History{
		Created:    &created,
		Author:     opts.Author,
		CreatedBy:  o.CreatedBy,
		Comment:    opts.Message,
		EmptyLayer: empty,
	})
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return st.Put(raw, layers, tags)
}

// writeLayer streams the changes into a new blob. A walk that yields
// nothing gives no layer at all (docker's empty_layer).
func writeLayer(ctx context.Context, st *store.Store, src diff.Source, opts Options) (*ocispec.Descriptor, diff.Result, error) {
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

// Dir is a root filesystem in a directory (dir://PATH), committed against
// the base image it was made from.
type Dir struct {
	Root string
	Base string // image name; empty: the directory is the whole image
}

func (d Dir) String() string { return "dir://" + d.Root }

// Open unpacks the base's layers (once, cached) to compare the directory with.
func (d Dir) Open(ctx context.Context, st *store.Store) (*Opened, error) {
	o := &Opened{Whole: diff.Rootfs{Root: d.Root}}
	if d.Base == "" {
		o.Changes = o.Whole
		return o, nil
	}
	base, err := st.Lookup(d.Base)
	if err != nil {
		return nil, fmt.Errorf("base %w", err)
	}
	lowers, err := st.LayerDirs(base)
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", d.Base, err)
	}
	o.Base, o.Changes = base, diff.Rootfs{Root: d.Root, Lowers: lowers}
	return o, nil
}
