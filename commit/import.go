package commit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/store"
)

// Import makes a one-layer image from a root filesystem tarball, as `docker
// import` does: the tar (plain or compressed) is the layer, the history
// entry's comment is the message or "Imported from SRC". Once ctx is
// cancelled it stops reading r, stores nothing and returns ctx's error.
func Import(ctx context.Context, st *store.Store, r io.Reader, src string, opts Options) (*store.Image, error) {
	lease, err := st.Lease(ctx) // from the layer's temp file until Put makes it reachable
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	defer lease.Release()
	tags, err := opts.tags()
	if err != nil {
		return nil, err
	}
	var cfg dockerspec.DockerOCIImage
	if err := ApplyChanges(&cfg.Config, opts.Changes); err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	desc, diffID, err := st.AddLayer(ctx, r, opts.layerCompression())
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	created := opts.createdAt()
	msg := opts.Message
	if msg == "" {
		msg = "Imported from " + src
	}
	cfg.Created = &created
	cfg.Architecture, cfg.OS = runtime.GOARCH, runtime.GOOS
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}
	cfg.History = []ocispec.History{{Created: &created, Comment: msg}}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	img, err := st.Put(raw, []ocispec.Descriptor{desc}, tags)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	return img, nil
}
