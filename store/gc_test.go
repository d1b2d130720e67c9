package store

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"snap/compression"
	"snap/internal/testenv"
)

// layerTar is a one-file layer.
func layerTar(t *testing.T, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(content)), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(tw, content)
	tw.Close()
	return b.Bytes()
}

// putImage stores an image of the given layers (each a file name and its
// content) under tag.
func putImage(t *testing.T, s *Store, tag string, files ...string) *Image {
	t.Helper()
	var descs []ocispec.Descriptor
	var diffIDs []string
	for i := 0; i < len(files); i += 2 {
		desc, diffID, err := s.AddLayer(t.Context(), bytes.NewReader(layerTar(t, files[i], files[i+1])), compression.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, desc)
		diffIDs = append(diffIDs, `"`+diffID.String()+`"`)
	}
	cfg := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[` + strings.Join(diffIDs, ",") + `]},"config":{"Env":["T=` + tag + `"]}}`
	img, err := s.Put([]byte(cfg), descs, []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Prune reclaims the unpacked layers (ROOT/layers/<diffID>) of a removed
// image and keeps those of the images still in the store, a layer both
// share included; the bytes it reports count them.
func TestPruneReclaimsUnusedLayerDirs(t *testing.T) {
	testenv.Root(t, "unpacking layers with their owners")
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	content := strings.Repeat("only in the removed image ", 1000)
	gone := putImage(t, s, "gone:1", "shared", "base", "mine", content)
	kept := putImage(t, s, "kept:1", "shared", "base", "other", "kept")
	goneDirs, err := s.LayerDirs(gone)
	if err != nil {
		t.Fatal(err)
	}
	keptDirs, err := s.LayerDirs(kept)
	if err != nil {
		t.Fatal(err)
	}
	if goneDirs[1] != keptDirs[1] {
		t.Fatalf("the shared layer is unpacked twice: %s, %s", goneDirs[1], keptDirs[1])
	}
	if _, err := s.Remove("gone:1"); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(goneDirs[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the removed image's own layer %s is still unpacked (%v)", goneDirs[0], err)
	}
	for _, d := range keptDirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("a kept image's layer was pruned: %v", err)
		}
	}
	var blobs int64 = gone.ManifestDesc.Size + gone.Manifest.Config.Size + gone.Manifest.Layers[1].Size
	if want := blobs + int64(len(content)); rep.Freed != want {
		t.Errorf("prune reports %d bytes freed, want %d (blobs %d + unpacked %d)", rep.Freed, want, blobs, len(content))
	}
	if _, err := s.LayerDirs(kept); err != nil {
		t.Fatalf("kept image after prune: %v", err)
	}
}

// Prune takes everything writers left in the store: under the exclusive GC
// lock no writer is in flight, so every temp file is a killed one's.
// Before, prune kept temp blobs for an hour and never looked at the others.
func TestPruneTakesTempLeftovers(t *testing.T) {
	testenv.Root(t, "unpacking layers with their owners")
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := putImage(t, s, "a:1", "f", "x")
	// Each leftover: the temp entry a writer made, a file in it, its size.
	leftovers := []struct {
		temp, file string
		size       int
	}{
		{"ingest/blob-123", "", 1000},                               // a killed commit's layer
		{"ingest/layer-456", "usr/bin/tool", 2000},                  // a killed unpack
		{"blobs/sha256/.tmp-blob-789", "", 3000},                    // the old layout's temp blob
		{"layers/.tmp-012", "etc/passwd", 4000},                     // the old layout's unpack
		{".tmp-load-345", "blobs/sha256/" + img.ID.Encoded(), 5000}, // a killed load
		{".tmp-index.json-678", "", 6},                              // a killed index write
	}
	var want int64
	for _, l := range leftovers {
		p := filepath.Join(s.Root(), l.temp, l.file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, l.size), 0o644); err != nil {
			t.Fatal(err)
		}
		want += int64(l.size)
	}
	rep, err := s.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Freed != want {
		t.Errorf("freed %d, want %d", rep.Freed, want)
	}
	for _, l := range leftovers {
		if _, err := os.Lstat(filepath.Join(s.Root(), l.temp)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left (%v)", l.temp, err)
		}
	}
	if _, err := s.Lookup("a:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LayerDirs(img); err != nil {
		t.Fatal(err)
	}
}

// A prune waits for the writers in flight (their leases), and gives up
// when its context ends; a writer waits for a prune in the same way.
func TestLeaseHoldsPruneOff(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := s.Lease(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// What a writer has in flight under its lease.
	w, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("a layer being written"))
	other, _ := Open(root) // another writer of the store: leases nest
	inner, err := other.Lease(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	inner.Release()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		p, _ := Open(root)
		_, err := p.Prune(ctx)
		done <- err
	}()
	// The prune cannot finish while the lease is held: it can only end by
	// its context, and then it must have removed nothing.
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("prune under a lease: %v, want context.Canceled", err)
	}
	d, err := w.Commit()
	if err != nil {
		t.Fatalf("the lease's blob: %v", err)
	}
	lease.Release()
	lease.Release() // twice is harmless

	// Now a prune runs and holds the GC lock: a lease waits for it.
	unlock, err := s.gcLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := other.Lease(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("lease under prune: %v, want context.Canceled", err)
	}
	unlock()
	if _, err := s.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadBlob(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unreachable blob after the lease ended: %v, want it pruned", err)
	}
}

// breakImage damages one image of the store as the case says.
type breakCase struct {
	name string
	// damage breaks img in s.
	damage func(t *testing.T, s *Store, img *Image)
	// sentinel is what the image's error wraps.
	sentinel error
	// unwalked: the manifest cannot be read, so prune keeps every blob.
	unwalked bool
}

var breakCases = []breakCase{
	{"corrupt manifest", func(t *testing.T, s *Store, img *Image) {
		overwrite(t, s, img.ManifestDesc.Digest, `{"schemaVersion":2,"config":{}}`)
	}, ErrCorrupt, true},
	{"corrupt config", func(t *testing.T, s *Store, img *Image) {
		overwrite(t, s, img.Manifest.Config.Digest, `{"os":"evil"}`)
	}, ErrCorrupt, false},
	{"missing config blob", func(t *testing.T, s *Store, img *Image) {
		if err := os.Remove(blobPath(t, s, img.Manifest.Config.Digest)); err != nil {
			t.Fatal(err)
		}
	}, ErrNotFound, false},
	{"manifest that is not JSON", func(t *testing.T, s *Store, img *Image) {
		repoint(t, s, img, []byte("this is no manifest"))
	}, ErrCorrupt, false},
	{"manifest whose config digest is a path", func(t *testing.T, s *Store, img *Image) {
		m := img.Manifest
		m.Config.Digest = "sha256:../../../../etc/passwd"
		b, _ := json.Marshal(m)
		repoint(t, s, img, b)
	}, ErrInvalidDigest, false},
	{"index entry whose digest is a path", func(t *testing.T, s *Store, img *Image) {
		if err := s.Update(func(idx *ocispec.Index) error {
			for i := range idx.Manifests {
				if idx.Manifests[i].Digest == img.ManifestDesc.Digest {
					idx.Manifests[i].Digest = "sha256:../../oci-layout"
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}, ErrInvalidDigest, true},
}

func overwrite(t *testing.T, s *Store, d digest.Digest, content string) {
	t.Helper()
	if err := os.WriteFile(blobPath(t, s, d), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// repoint makes img's index entries point at a new, intact manifest blob.
func repoint(t *testing.T, s *Store, img *Image, manifest []byte) {
	t.Helper()
	md, err := s.PutBlob(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(idx *ocispec.Index) error {
		for i := range idx.Manifests {
			if idx.Manifests[i].Digest == img.ManifestDesc.Digest {
				idx.Manifests[i].Digest, idx.Manifests[i].Size = md, int64(len(manifest))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// One broken image costs only itself: the others list, look up and unpack;
// looking it up fails naming it; Remove (by tag, by ID or manifest digest
// prefix) takes it out and Prune, which never fails on it, then reclaims
// what only it used. Before, Images failed for every image and so did
// Remove and Prune (issue 8, item 3).
func TestBrokenImageCostsOnlyItself(t *testing.T) {
	testenv.Root(t, "unpacking layers with their owners")
	for _, tc := range breakCases {
		for _, by := range []string{"tag", "digest prefix"} {
			t.Run(tc.name+"/rmi by "+by, func(t *testing.T) {
				s, err := Open(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				good := putImage(t, s, "good:1", "g", "good")
				bad := putImage(t, s, "bad:1", "b", "bad")
				if _, err := s.LayerDirs(bad); err != nil {
					t.Fatal(err)
				}
				tc.damage(t, s, bad)

				imgs, err := s.Images()
				if err != nil {
					t.Fatalf("Images: %v", err)
				}
				var broken []*Image
				for _, img := range imgs {
					if img.Err != nil {
						broken = append(broken, img)
					}
				}
				if len(imgs) != 2 || len(broken) != 1 || broken[0].Name() != "bad:1" {
					t.Fatalf("%d images, broken %v; want 2 and bad:1 broken", len(imgs), broken)
				}
				if !errors.Is(broken[0].Err, tc.sentinel) {
					t.Errorf("the broken image's error %q does not wrap %q", broken[0].Err, tc.sentinel)
				}
				if img, err := s.Lookup("good:1"); err != nil || img.ID != good.ID {
					t.Fatalf("Lookup(good:1): %v", err)
				}
				if _, err := s.LayerDirs(good); err != nil {
					t.Fatalf("LayerDirs(good:1): %v", err)
				}
				_, err = s.Lookup("bad:1")
				if err == nil || !strings.HasPrefix(err.Error(), "image bad:1: ") || !errors.Is(err, tc.sentinel) {
					t.Fatalf("Lookup(bad:1) = %v, want an error naming the image and wrapping %q", err, tc.sentinel)
				}
				t.Logf("Lookup(bad:1): %v", err)

				// Prune with the broken image in the store works and
				// keeps the good image whole.
				rep, err := s.Prune(context.Background())
				if err != nil {
					t.Fatalf("Prune with a broken image: %v", err)
				}
				if got := len(rep.Unwalked); got != map[bool]int{true: 1}[tc.unwalked] {
					t.Errorf("%d unwalked images, want unwalked=%v", got, tc.unwalked)
				}
				if _, err := s.Lookup("good:1"); err != nil {
					t.Fatalf("good:1 after prune: %v", err)
				}

				name := "bad:1"
				if by != "tag" {
					name = broken[0].ManifestDesc.Digest.Encoded()[:12]
					if errors.Is(tc.sentinel, ErrInvalidDigest) && tc.unwalked {
						name = "bad:1" // an entry with no digest has no digest to name it by
					}
				}
				done, err := s.Remove(name)
				if err != nil {
					t.Fatalf("Remove(%s): %v", name, err)
				}
				if len(done) == 0 || !strings.HasPrefix(done[len(done)-1], "Deleted: ") {
					t.Errorf("Remove(%s) = %v, want the image deleted", name, done)
				}
				rep, err = s.Prune(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if len(rep.Unwalked) != 0 || rep.Freed == 0 {
					t.Errorf("prune after rmi: %+v", rep)
				}
				assertConsistent(t, s)
				imgs, _ = s.Images()
				if len(imgs) != 1 || imgs[0].ID != good.ID {
					t.Fatalf("after rmi and prune: %d images", len(imgs))
				}
				// Only the good image's blobs remain.
				want := map[string]bool{good.ManifestDesc.Digest.Encoded(): true, good.ID.Encoded(): true, good.Manifest.Layers[0].Digest.Encoded(): true}
				ents, _ := os.ReadDir(s.blobDir())
				for _, e := range ents {
					if !want[e.Name()] {
						t.Errorf("blob %s kept after the broken image went", e.Name())
					}
				}
				layers, _ := os.ReadDir(s.LayersDir())
				if len(layers) != 1 || layers[0].Name() != good.Config.RootFS.DiffIDs[0].Encoded() {
					t.Errorf("unpacked layers after prune: %v", layers)
				}
			})
		}
	}
}

// assertConsistent checks the store as a whole: every blob file hashes to
// its name, every index entry's image reads, every layer it names is there.
func assertConsistent(t *testing.T, s *Store) {
	t.Helper()
	ents, err := os.ReadDir(s.blobDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := s.ReadBlob(digest.NewDigestFromEncoded(digest.SHA256, e.Name())); err != nil {
			t.Errorf("store inconsistent: %v", err)
		}
	}
	imgs, err := s.Images()
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if img.Err != nil {
			t.Errorf("store inconsistent: image %s: %v", img.Name(), img.Err)
			continue
		}
		for _, l := range img.Manifest.Layers {
			if _, err := s.ReadBlob(l.Digest); err != nil {
				t.Errorf("store inconsistent: image %s: %v", img.Name(), err)
			}
		}
	}
}

// No digest that is not sha256:<64 hex> ever becomes a path: not in
// BlobPath, ReadBlob, OpenBlob, Put (layer descriptors come from archives),
// LayerDir. Before, Put stat'ed a layer digest's path as it was, so
// sha256:../../../../<file> passed as a stored layer.
func TestInvalidDigestNeverAPath(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A file the traversal would reach: blobs/sha256/../../oci-layout.
	for _, d := range []digest.Digest{
		"sha256:../../oci-layout",
		"sha256:../../../../etc/passwd",
		"sha256:" + digest.Digest(strings.Repeat("A", 64)),
		"sha512:" + digest.Digest(strings.Repeat("a", 128)),
		"",
	} {
		if p, err := s.BlobPath(d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("BlobPath(%q) = %q, %v; want ErrInvalidDigest", d, p, err)
		}
		if _, err := s.ReadBlob(d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("ReadBlob(%q): %v", d, err)
		}
		if _, err := s.OpenBlob(d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("OpenBlob(%q): %v", d, err)
		}
		layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: 1}
		if _, err := s.Put(config(1), []ocispec.Descriptor{layer}, []string{"evil:1"}); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Put with layer %q: %v, want ErrInvalidDigest", d, err)
		}
		if _, err := s.LayerDir(ocispec.Descriptor{Digest: digest.FromString("x")}, d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("LayerDir(diffID %q): %v", d, err)
		}
	}
	if idx, _ := s.Index(); len(idx.Manifests) != 0 {
		t.Fatalf("index took an image with an invalid layer digest: %v", idx.Manifests)
	}
}

// PutBlob repairs a corrupt copy: storing the image again heals it.
func TestPutBlobHealsCorruptCopy(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := putImage(t, s, "a:1", "f", "x")
	overwrite(t, s, img.ID, "garbage")
	if _, err := s.Lookup("a:1"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Lookup: %v, want ErrCorrupt", err)
	}
	if _, err := s.Put(img.RawConfig, img.Manifest.Layers, []string{"a:1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup("a:1"); err != nil {
		t.Fatalf("after storing it again: %v", err)
	}
}

// An unpacked layer that a live overlay uses as a lower (a running
// container's) is kept even when no image in the store lists it any more;
// once unmounted, prune takes it.
func TestPruneKeepsMountedLowers(t *testing.T) {
	testenv.Root(t, "an overlay mount")
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img := putImage(t, s, "gone:1", "f", "in the lower")
	dirs, err := s.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	w := t.TempDir()
	upper, work, merged := filepath.Join(w, "upper"), filepath.Join(w, "work"), filepath.Join(w, "merged")
	for _, d := range []string{upper, work, merged} {
		os.Mkdir(d, 0o755)
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+dirs[0]+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(merged, unix.MNT_DETACH)
		}
	}()
	if _, err := s.Remove("gone:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(merged, "f")); err != nil || string(b) != "in the lower" {
		t.Fatalf("the mounted overlay lost its lower: %q, %v", b, err)
	}
	if err := unix.Unmount(merged, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if _, err := s.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirs[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unmounted, the layer is still unpacked (%v)", err)
	}
}
