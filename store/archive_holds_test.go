package store

// Attacks on issue 8's store work that the code withstood, kept as
// regression tests. Helpers are in archive_attack_test.go.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/internal/archivetest"
)

// Passes: archives shaped to confuse the tar index (names, links, PAX,
// nesting, lying descriptors) are refused with an error naming what is
// wrong, and the index stays as it was.
func TestHostileArchiveShapesRefused(t *testing.T) {
	layer := layerTar(t, "etc/motd", "hi\n")
	diffID := digest.FromBytes(layer)
	dockerWith := func(layerName string, extra ...archivetest.Entry) []archivetest.Entry {
		m, _ := json.Marshal([]dockerManifest{{Config: "c.json", RepoTags: []string{"h:1"}, Layers: []string{layerName}}})
		return append(extra, archivetest.Entry{Name: "c.json", Body: archivetest.Config(diffID)}, archivetest.Entry{Name: "manifest.json", Body: m})
	}
	// An OCI archive whose index.json points at a nested index.
	nested := func() []archivetest.Entry {
		es := archivetest.OCI{Ref: "n:1"}.Entries(t, layer)
		var inner ocispec.Index
		json.Unmarshal(es[3].Body, &inner)
		ib, _ := json.Marshal(inner)
		d := digest.FromBytes(ib)
		outer, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{
			{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: int64(len(ib))}}})
		es[3].Body = outer
		return append(es, archivetest.Entry{Name: "blobs/sha256/" + d.Encoded(), Body: ib})
	}()
	// An OCI manifest whose config digest is its layer's.
	configIsLayer := func() []archivetest.Entry {
		gz := archivetest.Gzip(t, layer)
		es := archivetest.OCI{Ref: "c:1", Blob: gz, MediaType: ocispec.MediaTypeImageLayerGzip}.Entries(t, layer)
		var m ocispec.Manifest
		json.Unmarshal(es[2].Body, &m)
		m.Config.Digest, m.Config.Size = digest.FromBytes(gz), int64(len(gz))
		mb, _ := json.Marshal(m)
		md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
		idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{md}})
		es[2] = archivetest.Entry{Name: "blobs/sha256/" + md.Digest.Encoded(), Body: mb}
		es[3].Body = idx
		return es
	}()
	tagWithDigest := archivetest.OCI{Ref: "x:1@sha256:" + strings.Repeat("a", 64)}.Entries(t, layer)
	tests := []struct {
		name    string
		entries []archivetest.Entry
		want    string
	}{
		{"symlink loop", dockerWith("a/layer.tar",
			archivetest.Entry{Name: "a/layer.tar", Typ: tar.TypeSymlink, Link: "../b/layer.tar"},
			archivetest.Entry{Name: "b/layer.tar", Typ: tar.TypeSymlink, Link: "../a/layer.tar"}), "links"},
		{"hardlink loop", dockerWith("a", archivetest.Entry{Name: "a", Typ: tar.TypeLink, Link: "b"}, archivetest.Entry{Name: "b", Typ: tar.TypeLink, Link: "a"}), "links"},
		{"symlink chain out through a hardlink", dockerWith("a",
			archivetest.Entry{Name: "a", Typ: tar.TypeLink, Link: "d/s"},
			archivetest.Entry{Name: "d/s", Typ: tar.TypeSymlink, Link: "../../../etc/passwd"}), "outside"},
		{"symlink to a directory", dockerWith("s", archivetest.Entry{Name: "d/", Typ: tar.TypeDir}, archivetest.Entry{Name: "s", Typ: tar.TypeSymlink, Link: "d"}), "not a regular file"},
		{"layer a fifo", dockerWith("p", archivetest.Entry{Name: "p", Typ: tar.TypeFifo}), "not a regular file"},
		{"PAX header over 1 MiB", append(archivetest.Docker{Tag: "h:1"}.Entries(layer), archivetest.Entry{Name: "x", Typ: tar.TypeXHeader, Body: archivetest.PAXRecord("comment", strings.Repeat("x", 2<<20))}), "archive"},
		{"later manifest.json names a missing layer", append(archivetest.Docker{Tag: "h:1"}.Entries(layer), dockerWith("missing/layer.tar")[1]), "missing/layer.tar"},
		{"OCI nested index", nested, "not an image manifest"},
		{"OCI config digest is the layer's", configIsLayer, "config"},
		{"OCI tag annotation with a digest", tagWithDigest, "digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			before := rvIndex(t, s)
			_, err = s.LoadArchive(t.Context(), bytes.NewReader(archivetest.Tar(t, nil, tc.entries...)), compression.Gzip)
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("load: %v, want an error naming %q", err, tc.want)
			}
			if after := rvIndex(t, s); after != before {
				t.Errorf("index changed:\n%s\n->\n%s", before, after)
			}
		})
	}
}

// Passes: the index is built before any link is resolved, so a hardlink to
// a later entry loads (docker's extraction would refuse it: lenient, but it
// can only name what the archive holds), and of two manifest.json the later
// one counts, as extracting would leave it.
func TestArchiveEntryOrder(t *testing.T) {
	layer := layerTar(t, "etc/motd", "hi\n")
	diffID := digest.FromBytes(layer)
	first, _ := json.Marshal([]dockerManifest{{Config: "c.json", RepoTags: []string{"first:1"}, Layers: []string{"l/layer.tar"}}})
	later, _ := json.Marshal([]dockerManifest{{Config: "c.json", RepoTags: []string{"later:1"}, Layers: []string{"h/layer.tar"}}})
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := s.LoadArchive(t.Context(), bytes.NewReader(archivetest.Tar(t, nil,
		archivetest.Entry{Name: "manifest.json", Body: first},
		archivetest.Entry{Name: "h/layer.tar", Typ: tar.TypeLink, Link: "l/layer.tar"},
		archivetest.Entry{Name: "c.json", Body: archivetest.Config(diffID)},
		archivetest.Entry{Name: "l/layer.tar", Body: layer},
		archivetest.Entry{Name: "manifest.json", Body: later},
	)), compression.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || fmt.Sprint(imgs[0].Tags) != "[later:1]" {
		t.Fatalf("loaded %v", imgs)
	}
	if _, err := s.Lookup("first:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the replaced manifest.json's image: %v", err)
	}
}

// Passes: tag, rmi, put (as commit and load do: blob under a lease, then
// Put) and prune racing in one store, each with its own *Store so that the
// locks between them are real. After each round every image of the index
// reads whole, every tag names one image, and what a successful Put
// tagged and nobody removed is there.
func TestTagRemovePutPruneRace(t *testing.T) {
	root := t.TempDir()
	open := func() *Store {
		s, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	put := func(s *Store, tag, content string) error {
		lease, err := s.Lease(context.Background())
		if err != nil {
			return err
		}
		defer lease.Release()
		l := layerTar(t, "f", content)
		desc, diffID, err := s.AddLayer(context.Background(), bytes.NewReader(l), compression.None)
		if err != nil {
			return err
		}
		_, err = s.Put(archivetest.Config(diffID), []ocispec.Descriptor{desc}, []string{tag})
		return err
	}
	const rounds, n = 20, 6
	for r := range rounds {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		for i := range n {
			wg.Go(func() {
				if err := put(open(), fmt.Sprintf("p:%d-%d", r, i), fmt.Sprintf("%d %d", r, i)); err != nil {
					fail(err)
				}
			})
			wg.Go(func() {
				if r == 0 {
					return
				}
				s := open()
				// Tag races the rmi of its source and the prunes: it may
				// fail (not found), never leave a tag on a pruned image.
				s.Tag(fmt.Sprintf("p:%d-%d", r-1, i), fmt.Sprintf("t:%d-%d", r, i))
				if _, err := s.Remove(fmt.Sprintf("p:%d-%d", r-1, i)); err != nil && !errors.Is(err, ErrNotFound) {
					fail(err)
				}
				s.Remove(fmt.Sprintf("t:%d-%d", r-1, i))
			})
			wg.Go(func() {
				if _, err := open().Prune(context.Background()); err != nil {
					fail(err)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			t.Fatalf("round %d: %v", r, err)
		}
		s := open()
		assertConsistent(t, s)
		idx, err := s.Index()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, d := range idx.Manifests {
			if tag := d.Annotations[ocispec.AnnotationRefName]; tag != "" {
				if seen[tag] {
					t.Fatalf("round %d: tag %s on two entries", r, tag)
				}
				seen[tag] = true
			}
		}
		for i := range n {
			if tag := fmt.Sprintf("p:%d-%d", r, i); !seen[tag] {
				t.Fatalf("round %d: %s lost", r, tag)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// TestDiffIDMismatchStoresNoBlob: a layer whose content is not the diff_id
// its config gives is refused before its blob is committed, in both
// formats: the one check of the staged loader runs inside the layer's
// write. Before, the docker-archive loader checked after AddLayer had
// committed the blob, leaving it in blobs/ until a prune.
func TestDiffIDMismatchStoresNoBlob(t *testing.T) {
	layer := layerTar(t, "etc/motd", "hi\n")
	wrong := digest.FromString("another layer")
	for name, entries := range map[string][]archivetest.Entry{
		"docker-archive": archivetest.Docker{Tag: "m:1", DiffID: wrong}.Entries(layer),
		"oci-archive":    archivetest.OCI{Ref: "m:1", DiffID: wrong}.Entries(t, layer),
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.LoadArchive(t.Context(), bytes.NewReader(archivetest.Tar(t, nil, entries...)), compression.Gzip)
			if err == nil || !strings.Contains(err.Error(), wrong.String()) {
				t.Fatalf("err = %v, want a refusal naming the config's diff_id %s", err, wrong)
			}
			blobs, err := os.ReadDir(s.blobDir())
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range blobs {
				t.Errorf("blob %s stored by a refused load", b.Name())
			}
		})
	}
}
