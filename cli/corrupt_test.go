package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/store"
)

// One corrupt config or manifest blob breaks only its own image: images,
// history and inspect of another image work, the broken one fails naming
// it, prune works with it in the store, rmi removes it, prune then reclaims
// its blobs and leaves a consistent store. Before, every one of these
// commands failed on the first unreadable blob (issue 8, item 3).
func TestCorruptImageCostsOnlyItself(t *testing.T) {
	blobFile := func(t *testing.T, st *store.Store, d digest.Digest) string {
		p, err := st.BlobPath(d)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, st *store.Store, img *store.Image)
		rmi    func(img *store.Image) string // the name rmi is given
	}{
		{"corrupt manifest", func(t *testing.T, st *store.Store, img *store.Image) {
			os.WriteFile(blobFile(t, st, img.ManifestDesc.Digest), []byte(`{"schemaVersion":2}`), 0o644)
		}, func(*store.Image) string { return "bad:1" }},
		{"corrupt config", func(t *testing.T, st *store.Store, img *store.Image) {
			os.WriteFile(blobFile(t, st, img.ID), []byte(`{"os":"evil"}`), 0o644)
		}, func(img *store.Image) string { return img.ID.Encoded()[:12] }},
		{"missing config blob", func(t *testing.T, st *store.Store, img *store.Image) {
			if err := os.Remove(blobFile(t, st, img.ID)); err != nil {
				t.Fatal(err)
			}
		}, func(*store.Image) string { return "bad:1" }},
		{"manifest that is not JSON", func(t *testing.T, st *store.Store, img *store.Image) {
			md, err := st.PutBlob([]byte("<html>not a manifest</html>"))
			if err != nil {
				t.Fatal(err)
			}
			err = st.Update(func(idx *ocispec.Index) error {
				for i := range idx.Manifests {
					if idx.Manifests[i].Digest == img.ManifestDesc.Digest {
						idx.Manifests[i].Digest = md
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}, func(*store.Image) string {
			return "sha256:" + digest.FromString("<html>not a manifest</html>").Encoded()[:12]
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			t.Setenv("SNAP_ROOT", root)
			for _, name := range []string{"good", "bad"} {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
					t.Fatal(err)
				}
				runOut(t, "commit", "dir://"+dir, name+":1")
			}
			st, err := store.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			bad, err := st.Lookup("bad:1")
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(t, st, bad)

			// images: the good one on stdout, the broken one named once
			// on stderr.
			stdout, stderr := runCode(t, 0, "images")
			if !strings.Contains(stdout, "good ") || strings.Contains(stdout, "bad") {
				t.Errorf("images stdout:\n%s", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "image bad:1: ") {
				t.Errorf("images stderr %q, want one line naming bad:1", stderr)
			}
			if stdout, _ := runCode(t, 0, "images", "-q"); strings.Count(stdout, "\n") != 1 {
				t.Errorf("images -q:\n%s", stdout)
			}
			runCode(t, 0, "history", "good:1")
			runCode(t, 0, "inspect", "good:1")
			for _, cmd := range []string{"history", "inspect"} {
				_, stderr := runCode(t, 1, cmd, "bad:1")
				if !strings.HasPrefix(stderr, "snap: image bad:1: ") || strings.Count(stderr, "\n") != 1 {
					t.Errorf("%s bad:1: stderr %q, want one line 'snap: image bad:1: ...'", cmd, stderr)
				}
			}
			runCode(t, 0, "prune")

			stdout, _ = runCode(t, 0, "rmi", tc.rmi(bad))
			if !strings.Contains(stdout, "Deleted: ") {
				t.Errorf("rmi %s: %q", tc.rmi(bad), stdout)
			}
			stdout, stderr = runCode(t, 0, "prune")
			if !strings.HasPrefix(stdout, "Total reclaimed space: ") || stderr != "" {
				t.Errorf("prune after rmi: %q %q", stdout, stderr)
			}
			stdout, stderr = runCode(t, 0, "images")
			if !strings.Contains(stdout, "good ") || stderr != "" {
				t.Errorf("images after rmi and prune: %q %q", stdout, stderr)
			}
			runCode(t, 0, "history", "good:1")

			// Consistent: every blob verifies, every image reads, and
			// nothing of the broken image is left.
			ents, err := os.ReadDir(filepath.Join(root, "blobs/sha256"))
			if err != nil {
				t.Fatal(err)
			}
			good, err := st.Lookup("good:1")
			if err != nil {
				t.Fatal(err)
			}
			want := map[digest.Digest]bool{good.ManifestDesc.Digest: true, good.ID: true, good.Manifest.Layers[0].Digest: true}
			for _, e := range ents {
				d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
				if _, err := st.ReadBlob(d); err != nil {
					t.Errorf("after prune: %v", err)
				}
				if !want[d] {
					t.Errorf("after prune: blob %s is no good:1's", d)
				}
			}
		})
	}
}

// runCode runs snap, wants the exit code, and returns stdout and stderr.
func runCode(t *testing.T, code int, args ...string) (string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if got := Run(context.Background(), append([]string{"snap"}, args...), &stdout, &stderr); got != code {
		t.Fatalf("snap %s: exit %d, want %d; stderr %q", strings.Join(args, " "), got, code, stderr.String())
	}
	return stdout.String(), stderr.String()
}
