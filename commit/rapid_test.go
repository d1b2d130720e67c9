package commit

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/go-archive/compression"

	"snap/sourcing"
	"snap/store"
)

// topLayerFile reads one file's content out of an image's top layer blob.
func topLayerFile(t *testing.T, st *store.Store, img *store.Image, name string) (string, bool) {
	t.Helper()
	ls := img.Manifest.Layers
	if len(ls) == 0 {
		t.Fatalf("image %s has no layers", img.ID)
	}
	rc, err := st.OpenBlob(ls[len(ls)-1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	dec, err := compression.DecompressStream(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b), true
		}
	}
}

// TestRapidDirCommitsKeepEveryEdit is issue 8 item 1: a dir:// commit made
// in the same second as the one before, of a file edited to a new content
// of the same size, must carry the edit. The lower unpacked from the
// previous layer has whole-second mtimes, so metadata cannot tell; only the
// content can. 100 rounds, each checked by content.
func TestRapidDirCommitsKeepEveryEdit(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	f := filepath.Join(root, "f")
	if err := os.WriteFile(f, []byte("--\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Commit(ctx, st, sourcing.Dir{Root: root}, Options{Tag: "rapid:base"}); err != nil {
		t.Fatal(err)
	}
	prev := "rapid:base"
	lost := 0
	for i := range 100 {
		want := fmt.Sprintf("%02d\n", i) // always 3 bytes: the size never tells
		if err := os.WriteFile(f, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		tag := fmt.Sprintf("rapid:%d", i)
		img, err := Commit(ctx, st, sourcing.Dir{Root: root, Base: prev}, Options{Tag: tag})
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if got, ok := topLayerFile(t, st, img, "f"); !ok || got != want {
			lost++
			t.Errorf("round %d: top layer of %s holds f = %q (present %v), want %q", i, tag, got, ok, want)
		}
		prev = tag
	}
	if lost > 0 {
		t.Fatalf("%d of 100 edits lost", lost)
	}
}
