package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

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
	// Err is set on an image of the index whose manifest or config cannot
	// be read (it wraps ErrCorrupt, ErrNotFound for a missing blob, or
	// ErrInvalidDigest). Such an image has only its ManifestDesc and Tags,
	// and its ID if the manifest was readable: enough to name it, remove
	// it and prune it, nothing that needs its content.
	Err error
}

// Name is how a message names the image: its first tag, else its ID, else
// (the manifest unreadable) its manifest digest. Each is a name Lookup and
// Remove take.
func (img *Image) Name() string {
	switch {
	case len(img.Tags) > 0:
		return img.Tags[0]
	case img.ID != "":
		return img.ID.String()
	}
	return img.ManifestDesc.Digest.String()
}

// Images lists the store's images, one per manifest, in index order. An
// image whose manifest or config cannot be read is listed with Err set, so
// that one corrupt blob costs only its own image: callers that need an
// image's content skip those (or report them), Remove still finds them.
func (s *Store) Images() ([]*Image, error) {
	// Under a lease so that no prune deletes blobs between reading the
	// index and reading what it reaches: that would show a sound image,
	// removed a moment ago, as broken.
	lease, err := s.Lease(s.ctx)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	idx, err := s.Index()
	if err != nil {
		return nil, err
	}
	var out []*Image
	seen := map[digest.Digest]*Image{}
	for _, d := range idx.Manifests {
		img := seen[d.Digest]
		if img == nil {
			img = s.load(d)
			seen[d.Digest] = img
			out = append(out, img)
		}
		if tag := d.Annotations[ocispec.AnnotationRefName]; tag != "" && !slices.Contains(img.Tags, tag) {
			img.Tags = append(img.Tags, tag)
		}
	}
	return out, nil
}

// load reads one index entry's image; what fails is recorded in Err.
func (s *Store) load(d ocispec.Descriptor) *Image {
	img := &Image{ManifestDesc: ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}}
	mb, err := s.ReadBlob(d.Digest)
	if err != nil {
		img.Err = fmt.Errorf("manifest: %w", err)
		return img
	}
	if err := json.Unmarshal(mb, &img.Manifest); err != nil {
		img.Err = fmt.Errorf("manifest %s: %w: not a manifest: %v", d.Digest, ErrCorrupt, err)
		return img
	}
	if err := ValidateDigest(img.Manifest.Config.Digest); err != nil {
		img.Err = fmt.Errorf("manifest %s: config: %w", d.Digest, err)
		return img
	}
	img.ID = img.Manifest.Config.Digest
	if img.RawConfig, err = s.ReadBlob(img.Manifest.Config.Digest); err != nil {
		img.RawConfig = nil
		img.Err = fmt.Errorf("config: %w", err)
		return img
	}
	if err := json.Unmarshal(img.RawConfig, &img.Config); err != nil {
		img.Err = fmt.Errorf("config %s: %w: not an image config: %v", img.ID, ErrCorrupt, err)
	}
	return img
}

// Lookup finds an image by reference (repo[:tag]), image ID (sha256:hex or
// a unique hex prefix, as docker accepts) or manifest digest (or a unique
// prefix of it). A broken image is an error naming it, as name was given.
func (s *Store) Lookup(name string) (*Image, error) {
	img, err := s.find(name)
	if err != nil {
		return nil, err
	}
	if img.Err != nil {
		return nil, &BrokenImageError{Name: name, Err: img.Err}
	}
	return img, nil
}

// BrokenImageError is Lookup's error for an image the index holds but whose
// manifest or config cannot be read. It wraps the cause, which may itself be
// ErrNotFound (a missing blob): callers that treat "no such image" apart
// from "this image is broken" check for this type first.
type BrokenImageError struct {
	Name string
	Err  error
}

func (e *BrokenImageError) Error() string { return "image " + e.Name + ": " + e.Err.Error() }
func (e *BrokenImageError) Unwrap() error { return e.Err }

// find is Lookup that also returns a broken image, for what needs only its
// index entries (Remove).
func (s *Store) find(name string) (*Image, error) {
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
			if (img.ID != "" && strings.HasPrefix(img.ID.Encoded(), hex)) || strings.HasPrefix(img.ManifestDesc.Digest.Encoded(), hex) {
				found = append(found, img)
			}
		}
		// Manifests of one config (the same image loaded with other
		// compression) are one image to docker, whose ID is the config's.
		if len(found) > 0 && !slices.ContainsFunc(found, func(img *Image) bool { return img.ID != found[0].ID }) {
			return pickImage(found), nil
		}
		if len(found) > 1 {
			return nil, fmt.Errorf("image %s: ambiguous ID prefix", name)
		}
	}
	return nil, fmt.Errorf("image %s: %w", name, ErrNotFound)
}

// NewImage is an image to store: its config, its layers (already in the
// store) and the tags to point at it.
type NewImage struct {
	Config []byte
	Layers []ocispec.Descriptor
	Tags   []string // "repo:tag", as ParseRef gives them
	// Annotations go on the manifest (provenance: OCI's
	// org.opencontainers.image.*). The image ID, the config's digest,
	// does not depend on them; the manifest digest does.
	Annotations map[string]string
}

// pickImage chooses among manifests of one image: a readable one, tagged if
// any is, so that a broken copy does not hide a good one.
func pickImage(imgs []*Image) *Image {
	best := imgs[0]
	for _, img := range imgs[1:] {
		if (best.Err != nil && img.Err == nil) || (best.Err == nil) == (img.Err == nil) && len(best.Tags) == 0 && len(img.Tags) > 0 {
			best = img
		}
	}
	return best
}

// Put stores one image; see PutAll.
func (s *Store) Put(config []byte, layers []ocispec.Descriptor, tags []string) (*Image, error) {
	imgs, err := s.PutAll(s.ctx, []NewImage{{Config: config, Layers: layers, Tags: tags}})
	if err != nil {
		return nil, err
	}
	return imgs[0], nil
}

// PutAll stores images' configs and manifests and points their tags at
// them, in one index update: an archive of a thousand images costs one
// rewrite of index.json, not a thousand, and it lands whole or not at all.
// Layers must already be in the store. Each tag moves from any image that
// had it (a later image of news wins a tag two of them name). An image with
// no tag gets an untagged index entry (docker's <none>).
//
// PutAll holds a lease of its own, so a prune cannot come between the check
// that the layers are there and the index update; the caller's lease must
// cover the layers from their writing until PutAll.
func (s *Store) PutAll(ctx context.Context, news []NewImage) ([]*Image, error) {
	lease, err := s.Lease(ctx)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	out := make([]*Image, len(news))
	for i, n := range news {
		if out[i], err = s.putBlobs(ctx, n); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err = s.Update(func(idx *ocispec.Index) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, img := range out {
			for _, t := range img.Tags {
				dropTag(idx, t)
			}
			// Drop an untagged entry of the same image: it is now tagged.
			idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
				return d.Digest == img.ManifestDesc.Digest && d.Annotations[ocispec.AnnotationRefName] == ""
			})
			if len(img.Tags) == 0 && !slices.ContainsFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == img.ManifestDesc.Digest }) {
				idx.Manifests = append(idx.Manifests, img.ManifestDesc)
			}
			for _, t := range img.Tags {
				e := img.ManifestDesc
				e.Annotations = map[string]string{ocispec.AnnotationRefName: t}
				idx.Manifests = append(idx.Manifests, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// putBlobs checks one new image and stores its config and manifest blobs;
// the index is not touched.
func (s *Store) putBlobs(ctx context.Context, n NewImage) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	img := &Image{RawConfig: n.Config}
	if err := json.Unmarshal(n.Config, &img.Config); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	for _, l := range n.Layers {
		p, err := s.BlobPath(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, ErrNotFound)
		}
	}
	if len(n.Layers) != len(img.Config.RootFS.DiffIDs) {
		return nil, fmt.Errorf("config: %d diff_ids for %d layers", len(img.Config.RootFS.DiffIDs), len(n.Layers))
	}
	// One tag once: "x:1" and "docker.io/library/x:1" are the same tag.
	for _, t := range n.Tags {
		if !slices.Contains(img.Tags, t) {
			img.Tags = append(img.Tags, t)
		}
	}
	cd, err := s.PutBlob(n.Config)
	if err != nil {
		return nil, err
	}
	img.ID = cd
	img.Manifest = ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(n.Config))},
		Layers:    n.Layers,
	}
	if len(n.Annotations) > 0 {
		img.Manifest.Annotations = maps.Clone(n.Annotations)
	}
	if img.Manifest.Layers == nil {
		img.Manifest.Layers = []ocispec.Descriptor{}
	}
	mb, err := json.Marshal(img.Manifest)
	if err != nil {
		return nil, err
	}
	md, err := s.PutBlob(mb)
	if err != nil {
		return nil, err
	}
	img.ManifestDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
	return img, nil
}

// dropTag takes a tag off every entry that has it; an image left with no
// tag stays in the index untagged, as docker keeps a <none> image.
func dropTag(idx *ocispec.Index, tag string) {
	var dropped []ocispec.Descriptor
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
		if d.Annotations[ocispec.AnnotationRefName] != tag {
			return false
		}
		dropped = append(dropped, d)
		return true
	})
	for _, old := range dropped {
		if !slices.ContainsFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == old.Digest }) {
			old.Annotations = nil
			idx.Manifests = append(idx.Manifests, old)
		}
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
		// Removed (and so perhaps pruned) since Lookup: tagging it now would
		// point a tag at blobs that may be gone.
		if !slices.ContainsFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Digest == img.ManifestDesc.Digest }) {
			return fmt.Errorf("image %s: %w", name, ErrNotFound)
		}
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
// A broken image is removed as any other: that is how a user gets rid of it.
func (s *Store) Remove(name string) ([]string, error) {
	img, err := s.find(name)
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
			id := img.ID
			if id == "" {
				id = img.ManifestDesc.Digest // a broken manifest: the ID is unknown
			}
			done = append(done, "Deleted: "+id.String())
		}
		return nil
	})
	return done, err
}
