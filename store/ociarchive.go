package store

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SaveOCIArchive writes images as an OCI archive: a tar of an OCI layout
// holding just these images (skopeo's oci-archive: transport reads it).
func (s *Store) SaveOCIArchive(w io.Writer, imgs []*Image) error {
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
		if err := add("blobs/sha256/"+d.Encoded(), size, rc); err != nil {
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

// loadOCILayout takes the images of an extracted OCI layout: every blob
// they reach is verified against its digest while copied into the store.
// Tags are the ref.name annotations; one that is not a valid reference is
// refused before anything is tagged.
func (s *Store) loadOCILayout(root *os.Root) ([]*Image, error) {
	ib, err := root.ReadFile(ocispec.ImageIndexFile)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(ib, &idx); err != nil {
		return nil, fmt.Errorf("archive index.json: %w", err)
	}
	copyBlob := func(d digest.Digest) ([]byte, error) {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("archive blob %q: %w", d, err)
		}
		b, err := root.ReadFile(path.Join("blobs", d.Algorithm().String(), d.Encoded()))
		if err != nil {
			return nil, fmt.Errorf("archive blob %s: %w", d, err)
		}
		if got := digest.FromBytes(b); got != d {
			return nil, fmt.Errorf("archive blob %s is corrupt: its content hashes to %s", d, got)
		}
		if _, err := s.PutBlob(b); err != nil {
			return nil, err
		}
		return b, nil
	}
	type pending struct {
		config []byte
		layers []ocispec.Descriptor
		tag    string
	}
	var all []pending
	for _, md := range idx.Manifests {
		if md.MediaType != ocispec.MediaTypeImageManifest && md.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
			return nil, fmt.Errorf("archive: %s is a %s, not an image manifest", md.Digest, md.MediaType)
		}
		mb, err := copyBlob(md.Digest)
		if err != nil {
			return nil, err
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(mb, &m); err != nil {
			return nil, fmt.Errorf("archive manifest %s: %w", md.Digest, err)
		}
		cb, err := copyBlob(m.Config.Digest)
		if err != nil {
			return nil, err
		}
		p := pending{config: cb}
		var cfg ocispec.Image
		if err := json.Unmarshal(cb, &cfg); err != nil {
			return nil, fmt.Errorf("archive config %s: %w", m.Config.Digest, err)
		}
		if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
			return nil, fmt.Errorf("archive config %s: %d diff_ids for %d layers", m.Config.Digest, len(cfg.RootFS.DiffIDs), len(m.Layers))
		}
		for _, l := range m.Layers {
			if bp, err := s.BlobPath(l.Digest); err != nil || !fileExists(bp) {
				f, err := root.Open(path.Join("blobs", l.Digest.Algorithm().String(), l.Digest.Encoded()))
				if err != nil {
					return nil, fmt.Errorf("archive layer %s: %w", l.Digest, err)
				}
				bw, err := s.NewBlob()
				if err != nil {
					f.Close()
					return nil, err
				}
				_, err = io.Copy(bw, f)
				f.Close()
				if err == nil && bw.Digest() != l.Digest {
					err = fmt.Errorf("archive layer %s is corrupt: its content hashes to %s", l.Digest, bw.Digest())
				}
				if err == nil {
					_, err = bw.Commit()
				}
				bw.Abort()
				if err != nil {
					return nil, err
				}
			}
			p.layers = append(p.layers, l)
		}
		if name := md.Annotations[ocispec.AnnotationRefName]; name != "" {
			if p.tag, err = ParseRef(name); err != nil {
				return nil, fmt.Errorf("archive tag: %w", err)
			}
		}
		all = append(all, p)
	}
	var out []*Image
	for _, p := range all {
		var tags []string
		if p.tag != "" {
			tags = []string{p.tag}
		}
		img, err := s.Put(p.config, p.layers, tags)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}
