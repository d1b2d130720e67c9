package container

// Issue 8's store work as containers see it: attacks written as
// tests; both fail on the code they were written against.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
)

// Regression: a container records its image by ID (the config digest) and looks
// it up by that ID on every mount and commit. The index can hold two
// manifests of one config (`snap load` of one archive twice with another
// --compression, or a commit of the same tree with --source-date-epoch and
// another compression: the tag moves to the new manifest, the old stays
// untagged with the same ID). Then Lookup(ID) is "ambiguous ID prefix" and
// the container can neither start nor be committed.
func TestContainerOfImageWithTwoManifests(t *testing.T) {
	st, m := setup(t)
	img, err := st.Lookup("base:1")
	if err != nil {
		t.Fatal(err)
	}
	// The same image, its layers stored uncompressed: what a second load
	// with --compression none stores.
	lease, err := st.Lease(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var layers []ocispec.Descriptor
	for _, l := range img.Manifest.Layers {
		rc, err := st.OpenBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		desc, _, err := st.AddLayer(t.Context(), rc, compression.None)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, desc)
	}
	again, err := st.Put(img.RawConfig, layers, []string{"base:1"})
	lease.Release()
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != img.ID || again.ManifestDesc.Digest == img.ManifestDesc.Digest {
		t.Fatalf("want one ID, two manifests: %s %s", again.ID, again.ManifestDesc.Digest)
	}
	meta, err := m.Create(CreateOptions{Image: "base:1", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Mount(meta); err != nil {
		t.Errorf("mount the container's rootfs: %v", err)
	}
	m.unmount(meta)
	if _, _, err := m.Lowers(meta); err != nil {
		t.Errorf("the container's lowers (what commit reads): %v", err)
	}
}

// Regression: rmi checks for containers (RemoveImage: Lookup, List, Remove)
// and Create makes one (Lookup, LayerDirs, rename of its dir) with nothing
// between them, so both succeed: the container's image is gone from the
// index, a prune then takes its blobs and unpacked layers, and the
// container can never start or be committed (issue 8, item 4, under
// concurrency: `snap run IMG` racing `snap rmi IMG; snap prune`). docker
// refuses one of the two.
func TestCreateRacesRemoveImage(t *testing.T) {
	st, m := setup(t)
	lost := 0
	for r := range 5 {
		// A fresh image each round, with a layer to unpack: Create's
		// window is LayerDirs.
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		body := bytes.Repeat([]byte(fmt.Sprint(r)), 4<<20)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: int64(len(body)), Mode: 0o644})
		tw.Write(body)
		tw.Close()
		lease, err := st.Lease(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		desc, diffID, err := st.AddLayer(t.Context(), &b, compression.None)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
			RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}}})
		tag := fmt.Sprintf("race:%d", r)
		_, err = st.Put(cfg, []ocispec.Descriptor{desc}, []string{tag})
		lease.Release()
		if err != nil {
			t.Fatal(err)
		}

		var wg sync.WaitGroup
		var meta *Meta
		var cerr, rerr error
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			meta, cerr = m.Create(CreateOptions{Image: tag, Args: []string{"true"}})
		})
		wg.Go(func() {
			<-start
			_, rerr = New(st).RemoveImage(tag, false)
		})
		close(start)
		wg.Wait()
		if cerr != nil {
			continue // rmi first: fine
		}
		defer m.Remove(meta, true)
		if rerr != nil {
			if !errors.Is(rerr, ErrImageInUse) {
				t.Fatal(rerr)
			}
			continue // create first: refused, fine
		}
		if _, err := st.Prune(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Mount(meta); err != nil {
			lost++
			t.Logf("round %d: both create and rmi succeeded; after a prune the container cannot mount: %v", r, err)
		} else {
			m.unmount(meta)
		}
	}
	if lost > 0 {
		t.Errorf("%d of 5 containers lost their image to an rmi that raced their creation", lost)
	}
}
