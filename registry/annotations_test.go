package registry

import (
	"context"
	"encoding/json"
	"maps"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/internal/registrytest"
	"snap/store"
)

// TestPushAndPullKeepManifestAnnotations: the provenance a commit puts on
// the manifest reaches the registry, also when the push rebuilds the
// manifest around layers it compresses, and comes back with a pull.
func TestPushAndPullKeepManifestAnnotations(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	st := newStore(t)
	plain := addImage(t, st, "plain:1", "", compression.None, "one")
	ann := map[string]string{
		ocispec.AnnotationCreated:       "2026-11-23T00:00:00Z",
		ocispec.AnnotationBaseImageName: "base:1",
		"dev.snap.capture.file.digest":  "sha256:0123",
	}
	imgs, err := st.PutAll(ctx, []store.NewImage{{Config: plain.RawConfig, Layers: plain.Manifest.Layers, Tags: []string{"ann:1"}, Annotations: ann}})
	if err != nil {
		t.Fatal(err)
	}
	if imgs[0].ID != plain.ID {
		t.Fatalf("annotations changed the image ID")
	}
	ref := reg.Ref("team/ann:1")
	if _, err := Push(ctx, st, "ann:1", ref, Options{}); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(m.Annotations, ann) {
		t.Errorf("pushed manifest annotations %v, want %v", m.Annotations, ann)
	}
	if m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("layer went out as %s: the push did not rebuild the manifest", m.Layers[0].MediaType)
	}
	got, err := Pull(ctx, newStore(t), ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got.Image.Manifest.Annotations, ann) || got.Image.ID != plain.ID {
		t.Errorf("pulled: annotations %v, ID %s", got.Image.Manifest.Annotations, got.Image.ID)
	}
}
