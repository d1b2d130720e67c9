package store

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// saveEntry is one entry of an archive being written; body, if set, writes
// exactly hdr.Size bytes.
type saveEntry struct {
	hdr  tar.Header
	body func(io.Writer) error
}

// writeEntries writes an archive's entries in their order, both formats'
// one tar writer. It stops with ctx's error once ctx is cancelled.
func writeEntries(ctx context.Context, w io.Writer, entries []saveEntry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return err
		}
		if e.body != nil {
			if err := e.body(tw); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// archiveImage is one image an archive holds, before it is stored: its
// config's bytes, its layers in order and its tags as the archive gives
// them. what and each layer's what name them in errors as the format does.
type archiveImage struct {
	what   string
	config []byte
	layers []archiveLayer
	tags   []string
	// annotations are the manifest's, where the format has a manifest of
	// its own (OCI); docker's manifest.json has no place for them.
	annotations map[string]string
}

// archiveLayer stores one layer of an archive; put refuses a layer whose
// uncompressed content is not diffID before its blob is committed.
type archiveLayer struct {
	what string
	put  func(diffID digest.Digest) (ocispec.Descriptor, error)
}

// stage checks an archive's image against its config (one diff_id a
// layer, each layer's content its diff_id) and stores its layers; the
// image itself is stored later with all the others, by PutAll.
func stage(img archiveImage) (NewImage, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(img.config, &cfg); err != nil {
		return NewImage{}, fmt.Errorf("archive config %s: %w", img.what, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(img.layers) {
		return NewImage{}, fmt.Errorf("archive config %s: %d diff_ids for %d layers", img.what, len(cfg.RootFS.DiffIDs), len(img.layers))
	}
	p := NewImage{Config: img.config, Annotations: img.annotations}
	for i, l := range img.layers {
		desc, err := l.put(cfg.RootFS.DiffIDs[i])
		if err != nil {
			return NewImage{}, fmt.Errorf("archive layer %s: %w", l.what, err)
		}
		p.Layers = append(p.Layers, desc)
	}
	for _, t := range img.tags {
		ref, err := ParseRef(t)
		if err != nil {
			return NewImage{}, fmt.Errorf("archive tag: %w", err)
		}
		p.Tags = append(p.Tags, ref)
	}
	return p, nil
}

// checkDiffID is the one check of a layer's uncompressed content against
// the diff_id its image's config gives it; want "" checks nothing.
func checkDiffID(got, want digest.Digest) error {
	if want != "" && got != want {
		return fmt.Errorf("uncompressed content is %s, the config says %s", got, want)
	}
	return nil
}
