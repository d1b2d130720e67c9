// Package sourcing is the contract between what a commit reads and the
// commit: a Source opens into a change-walker over a base image, and
// whatever else the walker can do it says through optional interfaces
// (Squasher, Merger). Sources live elsewhere (package source for other
// runtimes' containers, package container for snap's own); Dir, a root
// filesystem in a directory, lives here because the others fall back to it.
package sourcing

import (
	"context"
	"fmt"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"snap/diff"
	"snap/store"
)

// Source is something a commit reads: a container or a directory.
type Source interface {
	// Open makes the source ready to be walked (a container is paused).
	Open(ctx context.Context, st *store.Store) (*Opened, error)
	// String names the source as a user would: NAME, docker://NAME, ...
	String() string
}

// Opened is a source ready to be walked.
type Opened struct {
	// Changes walks what the source changed over Base: the new layer. It may
	// also be a Squasher or a Merger.
	Changes diff.Walker
	// Base is the image the changes apply to; nil for none.
	Base *store.Image
	// CreatedBy goes into the history entry (a container's command).
	CreatedBy string
	// Config, when set, replaces the base's config before -c applies: docker
	// commit starts from the container's own config (its command, env...).
	Config *dockerspec.DockerOCIImageConfig
	// Close, if set, releases the source (resumes a paused container). The
	// caller calls it on every path once Open succeeded.
	Close func() error
}

// Squasher is a change-walker that can also walk the whole filesystem it
// compares with its lowers, for a squashed commit (one layer holding it
// all). Whether a source can depends on what Open finds (a runc container's
// rootfs may be an overlay or a plain directory), so the walker says it,
// not the Source. A wrapper of a walker hides this unless it forwards it.
type Squasher interface {
	Whole() diff.Walker
}

// Merger is a change-walker that can list its changes as `docker diff`
// does, in the container's merged view (see diff.Merged), which a layer's
// changes do not always match; snap diff prefers it.
type Merger interface {
	Merged() diff.Walker
}

// Dir is a root filesystem in a directory (dir://PATH), committed against
// the base image it was made from.
type Dir struct {
	Root string
	Base string // image name; empty: the directory is the whole image
}

func (d Dir) String() string { return "dir://" + d.Root }

// Open unpacks the base's layers (once, cached) to compare the directory
// with. The walker is a Squasher and a Merger.
func (d Dir) Open(ctx context.Context, st *store.Store) (*Opened, error) {
	if d.Base == "" {
		return &Opened{Changes: diff.Rootfs{Root: d.Root}}, nil
	}
	base, err := st.Lookup(d.Base)
	if err != nil {
		return nil, fmt.Errorf("base %w", err)
	}
	lowers, err := st.LayerDirs(base)
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", d.Base, err)
	}
	return &Opened{Changes: diff.Rootfs{Root: d.Root, Lowers: lowers}, Base: base}, nil
}
