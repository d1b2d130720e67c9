package store

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SaveOCIArchive writes images as an OCI archive: a tar of an OCI layout
// holding just these images (skopeo's oci-archive: transport reads it).
// It stops with ctx's error once ctx is cancelled.
func (s *Store) SaveOCIArchive(ctx context.Context, w io.Writer, imgs []*Image) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	add := func(name string, size int64, body io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch}); err != nil {
			return err
		}
		_, err := io.Copy(tw, body)
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	written := map[digest.Digest]bool{}
	blob := func(d digest.Digest, size int64) error {
		if written[d] {
			return nil
		}
		rc, err := s.OpenBlob(d)
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := add("blobs/sha256/"+d.Encoded(), size, ctxReader{ctx, rc}); err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
		written[d] = true
		return nil
	}
	for _, img := range imgs {
		for _, l := range img.Manifest.Layers {
			if err := blob(l.Digest, l.Size); err != nil {
				return err
			}
		}
		if err := blob(img.Manifest.Config.Digest, img.Manifest.Config.Size); err != nil {
			return err
		}
		if err := blob(img.ManifestDesc.Digest, img.ManifestDesc.Size); err != nil {
			return err
		}
		tags := img.Tags
		if len(tags) == 0 {
			idx.Manifests = append(idx.Manifests, img.ManifestDesc)
		}
		for _, t := range tags {
			e := img.ManifestDesc
			e.Annotations = map[string]string{ocispec.AnnotationRefName: t}
			idx.Manifests = append(idx.Manifests, e)
		}
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	lb, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := add(ocispec.ImageLayoutFile, int64(len(lb)), strings.NewReader(string(lb))); err != nil {
		return err
	}
	if err := add(ocispec.ImageIndexFile, int64(len(ib)), strings.NewReader(string(ib))); err != nil {
		return err
	}
	return tw.Close()
}

// entry is the archive entry of a blob whose digest ValidateDigest passed.
func entry(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

// loadOCIArchive takes the images of an OCI archive's layout. Every digest
// is checked before it names an entry; every blob they reach is verified
// against its digest and size, and each layer, decompressed, against the
// config's diff_id, while it is copied into the store as it is. Tags are
// the ref.name annotations; one that is not a valid reference is refused
// before anything is tagged.
func (s *Store) loadOCIArchive(ctx context.Context, ix *tarIndex) ([]NewImage, error) {
	ib, err := ix.readSmall(ctx, ocispec.ImageIndexFile)
	if err != nil {
		return nil, fmt.Errorf("archive index.json: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(ib, &idx); err != nil {
		return nil, fmt.Errorf("archive index.json: %w", err)
	}
	readBlob := func(what string, d ocispec.Descriptor) ([]byte, error) {
		if err := ValidateDigest(d.Digest); err != nil {
			return nil, fmt.Errorf("archive %s %q: %w", what, d.Digest, err)
		}
		b, err := ix.readSmall(ctx, entry(d.Digest))
		if err != nil {
			return nil, fmt.Errorf("archive %s %s: %w", what, d.Digest, err)
		}
		if got := digest.FromBytes(b); got != d.Digest {
			return nil, fmt.Errorf("archive %s %s is corrupt: its content hashes to %s", what, d.Digest, got)
		}
		if int64(len(b)) != d.Size {
			return nil, fmt.Errorf("archive %s %s: %d bytes, its descriptor says %d", what, d.Digest, len(b), d.Size)
		}
		return b, nil
	}
	var all []NewImage
	for _, md := range idx.Manifests {
		if md.MediaType != ocispec.MediaTypeImageManifest && md.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
			return nil, fmt.Errorf("archive: %s is a %s, not an image manifest", md.Digest, md.MediaType)
		}
		mb, err := readBlob("manifest", md)
		if err != nil {
			return nil, err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(mb, &m); err != nil {
			return nil, fmt.Errorf("archive manifest %s: %w", md.Digest, err)
		}
		cb, err := readBlob("config", m.Config)
		if err != nil {
			return nil, err
		}
		var cfg ocispec.Image
		if err := json.Unmarshal(cb, &cfg); err != nil {
			return nil, fmt.Errorf("archive config %s: %w", m.Config.Digest, err)
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			return nil, fmt.Errorf("archive config %s: %d diff_ids for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
		}
		p := NewImage{Config: cb}
		for i, l := range m.Layers {
			if err := ValidateDigest(l.Digest); err != nil {
				return nil, fmt.Errorf("archive layer %q: %w", l.Digest, err)
			}
			_, sr, err := ix.open(entry(l.Digest))
			if err != nil {
				return nil, fmt.Errorf("archive layer %s: %w", l.Digest, err)
			}
			desc, err := s.copyLayer(ctx, sr, l, cfg.RootFS.DiffIDs[i])
			if err != nil {
				return nil, fmt.Errorf("archive layer %s: %w", l.Digest, err)
			}
			p.Layers = append(p.Layers, desc)
		}
		if name := md.Annotations[ocispec.AnnotationRefName]; name != "" {
			ref, err := ParseRef(name)
			if err != nil {
				return nil, fmt.Errorf("archive tag: %w", err)
			}
			p.Tags = []string{ref}
		}
		all = append(all, p)
	}
	return all, nil
}
