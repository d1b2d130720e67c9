package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// AnnotationContentSize records on a layer descriptor the size docker shows
// for the layer (the bytes of its files, hardlinks once), so history need not
// read the blob.
const AnnotationContentSize = "dev.snap.layer.content-size"

// ParseRef checks a REPO[:TAG] reference and returns it as "repo:tag", the
// tag defaulting to latest, in docker's short form.
func ParseRef(s string) (string, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return "", fmt.Errorf("reference %q: %w", s, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return "", fmt.Errorf("reference %q: a tag cannot carry a digest", s)
	}
	return reference.FamiliarString(reference.TagNameOnly(named)), nil
}

// Image is one image in the store.
type Image struct {
	ID           digest.Digest // the config's digest, as docker's image ID
	ManifestDesc ocispec.Descriptor
	Manifest     ocispec.Manifest
	Config       ocispec.Image
	RawConfig    []byte
	Tags         []string
}

// Images lists the store's images, one per manifest, in index order.
func (s *Store) Images() ([]*Image, error) {
	idx, err := s.Index()
	if err != nil {
		return nil, err
	}
	var out []*Image
	seen := map[digest.Digest]*Image{}
	for _, d := range idx.Manifests {
		img := seen[d.Digest]
		if img == nil {
			if img, err = s.load(d); err != nil {
				return nil, err
			}
			seen[d.Digest] = img
			out = append(out, img)
		}
		if tag := d.Annotations[ocispec.AnnotationRefName]; tag != "" && !slices.Contains(img.Tags, tag) {
			img.Tags = append(img.Tags, tag)
		}
	}
	return out, nil
}

func (s *Store) load(d ocispec.Descriptor) (*Image, error) {
	mb, err := s.ReadBlob(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	img := &Image{ManifestDesc: ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}}
	if err := json.Unmarshal(mb, &img.Manifest); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if img.RawConfig, err = s.ReadBlob(img.Manifest.Config.Digest); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := json.Unmarshal(img.RawConfig, &img.Config); err != nil {
		return nil, fmt.Errorf("config %s: %w", img.Manifest.Config.Digest, err)
	}
	img.ID = img.Manifest.Config.Digest
	return img, nil
}

// Lookup finds an image by reference (repo[:tag]), image ID (sha256:hex or
// a unique hex prefix, as docker accepts) or manifest digest.
func (s *Store) Lookup(name string) (*Image, error) {
	imgs, err := s.Images()
	if err != nil {
		return nil, err
	}
	if ref, err := ParseRef(name); err == nil {
		for _, img := range imgs {
			if slices.Contains(img.Tags, ref) {
				return img, nil
			}
		}
	}
	hex := strings.TrimPrefix(name, "sha256:")
	if len(hex) > 0 && len(hex) <= 64 && strings.Trim(hex, "0123456789abcdef") == "" {
		var found []*Image
		for _, img := range imgs {
			if strings.HasPrefix(img.ID.Encoded(), hex) || img.ManifestDesc.Digest.Encoded() == hex {
				found = append(found, img)
			}
		}
		if len(found) == 1 {
			return found[0], nil
		}
		if len(found) > 1 {
			return nil, fmt.Errorf("image %s: ambiguous ID prefix", name)
		}
	}
	return nil, fmt.Errorf("image %s: %w", name, ErrNotFound)
}

// Put stores an image's config and manifest and points tags at it. Layers
// must already be in the store. Each tag moves from any image that had it.
// An image with no tag gets an untagged index entry (docker's <none>).
func (s *Store) Put(config []byte, layers []ocispec.Descriptor, tags []string) (*Image, error) {
	for _, l := range layers {
		if _, err := os.Stat(s.BlobPath(l.Digest)); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, ErrNotFound)
		}
	}
	cd, err := s.PutBlob(config)
	if err != nil {
		return nil, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(config))},
		Layers:    layers,
	}
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	md, err := s.PutBlob(mb)
	if err != nil {
		return nil, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
	err = s.Update(func(idx *ocispec.Index) error {
		for _, t := range tags {
			dropTag(idx, t)
		}
		// Drop an untagged entry of the same image: it is now tagged.
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			return d.Digest == md && d.Annotations[ocispec.AnnotationRefName] == ""
		})
		if len(tags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, t := range tags {
			e := desc
			e.Annotations = map[string]string{ocispec.AnnotationRefName: t}
			idx.Manifests = append(idx.Manifests, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	img := &Image{ID: cd, ManifestDesc: desc, Manifest: m, RawConfig: config, Tags: tags}
	if err := json.Unmarshal(config, &img.Config); err != nil {
		return nil, fmt.Errorf("config %s: %w", cd, err)
	}
	return img, nil
}

// dropTag takes a tag off the image that has it; an image left with no tag
// stays in the index untagged, as docker keeps a <none> image.
func dropTag(idx *ocispec.Index, tag string) {
	i := slices.IndexFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Annotations[ocispec.AnnotationRefName] == tag })
	if i < 0 {
		return
	}
	old := idx.Manifests[i]
	idx.Manifests = slices.Delete(idx.Manifests, i, i+1)
	if !slices.ContainsFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == old.Digest }) {
		old.Annotations = nil
		idx.Manifests = append(idx.Manifests, old)
	}
}

// Tag points ref at the image named by name.
func (s *Store) Tag(name, ref string) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	img, err := s.Lookup(name)
	if err != nil {
		return err
	}
	return s.Update(func(idx *ocispec.Index) error {
		dropTag(idx, r)
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			return d.Digest == img.ManifestDesc.Digest && d.Annotations[ocispec.AnnotationRefName] == ""
		})
		e := img.ManifestDesc
		e.Annotations = map[string]string{ocispec.AnnotationRefName: r}
		idx.Manifests = append(idx.Manifests, e)
		return nil
	})
}

// Remove untags name if it is a tag, or removes every entry of the image if
// it is an ID (as docker rmi does). It returns what it untagged or deleted.
func (s *Store) Remove(name string) ([]string, error) {
	img, err := s.Lookup(name)
	if err != nil {
		return nil, err
	}
	var done []string
	ref, refErr := ParseRef(name)
	byTag := refErr == nil && slices.Contains(img.Tags, ref)
	err = s.Update(func(idx *ocispec.Index) error {
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			if d.Digest != img.ManifestDesc.Digest {
				return false
			}
			t := d.Annotations[ocispec.AnnotationRefName]
			if byTag && t != ref {
				return false
			}
			if t != "" {
				done = append(done, "Untagged: "+t)
			}
			return true
		})
		if !slices.ContainsFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == img.ManifestDesc.Digest }) {
			done = append(done, "Deleted: "+img.ID.String())
		}
		return nil
	})
	return done, err
}

// staleTemp is the age after which a temp blob can only be a killed commit's.
const staleTemp = time.Hour

// Prune deletes blobs that no index entry reaches, and unpacked layers no
// image uses. It returns the number of bytes freed.
func (s *Store) Prune() (int64, error) {
	var freed int64
	err := s.Update(func(idx *ocispec.Index) error {
		keep := map[digest.Digest]bool{}
		for _, d := range idx.Manifests {
			keep[d.Digest] = true
			mb, err := s.ReadBlob(d.Digest)
			if err != nil {
				return err
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(mb, &m); err != nil {
				return fmt.Errorf("manifest %s: %w", d.Digest, err)
			}
			keep[m.Config.Digest] = true
			for _, l := range m.Layers {
				keep[l.Digest] = true
			}
		}
		ents, err := os.ReadDir(s.blobDir())
		if err != nil {
			return err
		}
		for _, e := range ents {
			d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
			if strings.HasPrefix(e.Name(), ".tmp-") {
				// Left by a killed commit; one still running is younger.
				if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
					freed += info.Size()
					os.Remove(filepath.Join(s.blobDir(), e.Name()))
				}
				continue
			}
			if keep[d] {
				continue
			}
			if info, err := e.Info(); err == nil {
				freed += info.Size()
			}
			if err := os.Remove(filepath.Join(s.blobDir(), e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	return freed, err
}
