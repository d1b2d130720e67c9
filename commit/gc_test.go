package commit

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"snap/compression"
	"snap/sourcing"
	"snap/store"
)

// Commits racing prunes (and an rmi) in one store: every round 10 commits
// (half of them on a base from the round before, so layers are unpacked
// while prunes delete the unpacked layers of removed images), 10 prunes and
// the removal of the images of two rounds back, each with its own *Store so
// that the file locks between them are real. After each round the index
// must read, hold exactly the images committed and not removed, and every
// blob they reach must verify. Before leases, prunes took blobs that a
// commit had written and not yet tagged (issue 8, item 2).
func TestCommitsRacePrunes(t *testing.T) {
	rounds := 100
	if testing.Short() {
		rounds = 10
	}
	root := t.TempDir()
	dirs := t.TempDir()
	ctx := context.Background()
	const commits, prunes = 10, 10
	tag := func(r, i int) string { return fmt.Sprintf("p:%d-%d", r, i) }
	for i := range commits {
		if err := os.Mkdir(filepath.Join(dirs, fmt.Sprint(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for r := range rounds {
		for i := range commits {
			f := filepath.Join(dirs, fmt.Sprint(i), "f")
			if err := os.WriteFile(f, []byte(fmt.Sprintf("round %d commit %d", r, i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, commits+prunes+1)
		for i := range commits {
			wg.Go(func() {
				st, err := store.Open(root)
				if err != nil {
					errs <- err
					return
				}
				src := sourcing.Dir{Root: filepath.Join(dirs, fmt.Sprint(i))}
				if i%2 == 1 && r > 0 {
					src.Base = tag(r-1, i-1)
				}
				if _, err := Commit(ctx, st, src, Options{Tag: tag(r, i), Compression: compression.None}); err != nil {
					errs <- fmt.Errorf("round %d: %w", r, err)
				}
			})
		}
		for range prunes {
			wg.Go(func() {
				st, err := store.Open(root)
				if err == nil {
					_, err = st.Prune(ctx)
				}
				if err != nil {
					errs <- fmt.Errorf("round %d: prune: %w", r, err)
				}
			})
		}
		if r >= 2 {
			wg.Go(func() {
				st, err := store.Open(root)
				if err != nil {
					errs <- err
					return
				}
				for i := range commits {
					if _, err := st.Remove(tag(r-2, i)); err != nil {
						errs <- fmt.Errorf("round %d: rmi: %w", r, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		st, err := store.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := st.Images()
		if err != nil {
			t.Fatalf("round %d: images: %v", r, err)
		}
		want := map[string]bool{}
		for i := range commits {
			want[tag(r, i)] = true
			if r > 0 {
				want[tag(r-1, i)] = true
			}
		}
		for _, img := range imgs {
			if img.Err != nil {
				t.Fatalf("round %d: image %s: %v", r, img.Name(), img.Err)
			}
			for _, tg := range img.Tags {
				if !want[tg] {
					t.Fatalf("round %d: image %s is there, it was removed", r, tg)
				}
				delete(want, tg)
			}
			verifyBlobs(t, st, img)
		}
		if len(want) > 0 {
			t.Fatalf("round %d: images lost: %v", r, want)
		}
	}

	// A last prune, with nothing in flight: no temp file is left, and the
	// only unpacked layers are those of images still in the store.
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(root, "ingest")); len(left) > 0 {
		t.Errorf("temp files left in ingest/: %v", left)
	}
	imgs, _ := st.Images()
	used := map[string]bool{}
	for _, img := range imgs {
		for _, d := range img.Config.RootFS.DiffIDs {
			used[d.Encoded()] = true
		}
	}
	layers, _ := os.ReadDir(st.LayersDir())
	for _, e := range layers {
		if !used[e.Name()] {
			t.Errorf("unpacked layer %s of no image kept by prune", e.Name())
		}
	}
	if rounds > 2 && len(layers) == 0 {
		t.Error("no unpacked layer: the commits on a base did not unpack it")
	}
}

// verifyBlobs reads every blob img reaches, each checked against its digest.
func verifyBlobs(t *testing.T, st *store.Store, img *store.Image) {
	t.Helper()
	if _, err := st.ReadBlob(img.ManifestDesc.Digest); err != nil {
		t.Fatalf("image %s: manifest: %v", img.Name(), err)
	}
	if _, err := st.ReadBlob(img.Manifest.Config.Digest); err != nil {
		t.Fatalf("image %s: config: %v", img.Name(), err)
	}
	for _, l := range img.Manifest.Layers {
		rc, err := st.OpenBlob(l.Digest)
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err != nil {
			t.Fatalf("image %s: layer: %v", img.Name(), err)
		}
	}
	if strings.TrimSpace(img.Name()) == "" {
		t.Fatal("image without a name")
	}
}
