package store

import (
	"bytes"
	"context"
	"maps"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
)

// TestManifestAnnotations: NewImage's annotations land on the manifest, not
// in the image ID, and an OCI archive carries them through save and load.
// docker's archive format has no place for them (manifest.json): the
// image comes back the same, without them.
func TestManifestAnnotations(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{ocispec.AnnotationVersion: "3", ocispec.AnnotationAuthors: "Ops <ops@example.com>"}
	imgs, err := s.PutAll(ctx, []NewImage{{Config: config(1), Tags: []string{"plain:1"}}, {Config: config(1), Tags: []string{"ann:1"}, Annotations: ann}})
	if err != nil {
		t.Fatal(err)
	}
	plain, annotated := imgs[0], imgs[1]
	if plain.ID != annotated.ID || plain.ManifestDesc.Digest == annotated.ManifestDesc.Digest {
		t.Fatalf("IDs %s %s, manifests %s %s: want one ID, two manifests", plain.ID, annotated.ID, plain.ManifestDesc.Digest, annotated.ManifestDesc.Digest)
	}
	back, err := s.Lookup("ann:1")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(back.Manifest.Annotations, ann) {
		t.Fatalf("stored annotations %v", back.Manifest.Annotations)
	}
	ann["mutated"] = "after the put" // the store keeps its own copy
	if _, ok := annotated.Manifest.Annotations["mutated"]; ok {
		t.Error("the stored image shares the caller's map")
	}
	delete(ann, "mutated")

	for _, format := range []string{"oci", "docker"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			save := s.SaveOCIArchive
			if format == "docker" {
				save = s.SaveDockerArchive
			}
			if err := save(ctx, &buf, []*Image{back}); err != nil {
				t.Fatal(err)
			}
			dst, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := dst.LoadArchive(ctx, &buf, compression.Gzip)
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != 1 || loaded[0].ID != back.ID {
				t.Fatalf("loaded %d images", len(loaded))
			}
			want := ann
			if format == "docker" {
				want = nil
			}
			if got := loaded[0].Manifest.Annotations; !maps.Equal(got, want) {
				t.Errorf("loaded annotations %v, want %v", got, want)
			}
		})
	}
}
