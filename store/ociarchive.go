package store

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SaveOCIArchive writes images as an OCI archive: a tar of an OCI layout
// holding just these images (skopeo's oci-archive: transport reads it).
// It stops with ctx's error once ctx is cancelled.
func (s *Store) SaveOCIArchive(ctx context.Context, w io.Writer, imgs []*Image) error {
	epoch := time.Unix(0, 0)
	var entries []saveEntry
	add := func(name string, size int64, body func(io.Writer) error) {
		entries = append(entries, saveEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch}, body: body})
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		entries = append(entries, saveEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}})
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	written := map[digest.Digest]bool{}
	blob := func(d digest.Digest, size int64) {
		if written[d] {
			return
		}
		written[d] = true
		add("blobs/sha256/"+d.Encoded(), size, func(w io.Writer) error {
			rc, err := s.OpenBlob(d)
			if err != nil {
				return err
			}
			defer rc.Close()
			if _, err := io.Copy(w, ctxReader{ctx, rc}); err != nil {
				return fmt.Errorf("blob %s: %w", d, err)
			}
			return nil
		})
	}
	for _, img := range imgs {
		for _, l := range img.Manifest.Layers {
			blob(l.Digest, l.Size)
		}
		blob(img.Manifest.Config.Digest, img.Manifest.Config.Size)
		blob(img.ManifestDesc.Digest, img.ManifestDesc.Size)
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
	for _, f := range []struct {
		name string
		b    []byte
	}{{ocispec.ImageLayoutFile, lb}, {ocispec.ImageIndexFile, ib}} {
		add(f.name, int64(len(f.b)), func(w io.Writer) error { _, err := w.Write(f.b); return err })
	}
	return writeEntries(ctx, w, entries)
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
		sr, err := ix.openSmall(entry(d.Digest))
		if err != nil {
			return nil, fmt.Errorf("archive %s %s: %w", what, d.Digest, err)
		}
		return io.ReadAll(newVerifyReader(ctxReader{ctx, sr}, "archive "+what, d.Digest, d.Size))
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
		img := archiveImage{what: m.Config.Digest.String(), config: cb, annotations: m.Annotations}
		for _, l := range m.Layers {
			img.layers = append(img.layers, archiveLayer{what: l.Digest.String(), put: func(diffID digest.Digest) (ocispec.Descriptor, error) {
				if err := ValidateDigest(l.Digest); err != nil {
					return ocispec.Descriptor{}, err
				}
				_, sr, err := ix.open(entry(l.Digest))
				if err != nil {
					return ocispec.Descriptor{}, err
				}
				return s.copyLayer(ctx, sr, l, diffID)
			}})
		}
		if name := md.Annotations[ocispec.AnnotationRefName]; name != "" {
			img.tags = []string{name}
		}
		p, err := stage(img)
		if err != nil {
			return nil, err
		}
		all = append(all, p)
	}
	return all, nil
}
