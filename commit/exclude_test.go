package commit

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/go-archive/compression"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// layerEntries reads one layer blob: each entry's name and what it holds
// (a regular file's content, "-> target" for a link, "dir" for a directory).
func layerEntries(t *testing.T, st *store.Store, img *store.Image, i int) map[string]string {
	t.Helper()
	rc, err := st.OpenBlob(img.Manifest.Layers[i].Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	dec, err := compression.DecompressStream(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out := map[string]string{}
	tr := tar.NewReader(dec)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		switch h.Typeflag {
		case tar.TypeDir:
			out[name] = "dir"
		case tar.TypeSymlink, tar.TypeLink:
			out[name] = "-> " + h.Linkname
		default:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = string(b)
		}
	}
}

// flattened applies an image's layers one on the other, as a runtime's
// unpacking does: whiteouts remove, opaque markers empty their directory.
func flattened(t *testing.T, st *store.Store, img *store.Image) map[string]string {
	t.Helper()
	fs := map[string]string{}
	under := func(p string) func(string, string) bool {
		return func(k, _ string) bool { return k == p || strings.HasPrefix(k, p+"/") }
	}
	for i := range img.Manifest.Layers {
		for name := range layerEntries(t, st, img, i) {
			dir, base := path.Split(name)
			dir = strings.TrimSuffix(dir, "/")
			switch {
			case base == ".wh..wh..opq":
				maps.DeleteFunc(fs, func(k, _ string) bool { return strings.HasPrefix(k, dir+"/") })
			case strings.HasPrefix(base, ".wh."):
				maps.DeleteFunc(fs, under(path.Join(dir, strings.TrimPrefix(base, ".wh."))))
			}
		}
		for name, body := range layerEntries(t, st, img, i) {
			if !strings.HasPrefix(path.Base(name), ".wh.") {
				fs[name] = body
			}
		}
	}
	return fs
}

// TestCommitExclude: a dir:// commit with rules leaves a new secret out,
// does not white out a base file under an omit rule, writes a truncated
// log empty; squashed, the same rules give the normal commit flattened,
// so the base's file under the omit rule is there as the base has it.
func TestCommitExclude(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	put := func(p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("etc/ssh/ssh_host_key", "BASE-KEY")
	put("etc/ssh/sshd_config", "cfg")
	put("var/log/app.log", "base log")
	epoch := time.Unix(1700000000, 0)
	if _, err := Commit(context.Background(), st, sourcing.Dir{Root: root}, Options{Tag: "base:1", SourceDateEpoch: &epoch}); err != nil {
		t.Fatal(err)
	}
	// Later than the base's whole-second mtimes, so metadata tells.
	time.Sleep(10 * time.Millisecond)
	put("root/secret", "SECRET")
	put("root/notes", "kept")
	put("var/log/app.log", "base log and a great deal more")
	put("var/cache/junk/a/b", "junk")
	if err := os.Remove(filepath.Join(root, "etc/ssh/ssh_host_key")); err != nil {
		t.Fatal(err)
	}
	rules := []diff.Rule{
		{Pattern: "/root/secret", Action: diff.Omit},
		{Pattern: "/etc/ssh/ssh_host_*", Action: diff.Omit},
		{Pattern: "/var/cache/junk/**", Action: diff.Omit},
		{Pattern: "/var/log/**", Action: diff.Truncate},
	}
	src := sourcing.Dir{Root: root, Base: "base:1"}
	img, err := Commit(context.Background(), st, src, Options{Tag: "x:1", Exclude: rules, SourceDateEpoch: &epoch})
	if err != nil {
		t.Fatal(err)
	}
	top := layerEntries(t, st, img, len(img.Manifest.Layers)-1)
	for name, body := range top {
		if strings.Contains(name, "secret") || strings.Contains(name, ".wh.") || strings.Contains(name, "junk/") || strings.Contains(body, "SECRET") {
			t.Errorf("layer holds %s (%q)", name, body)
		}
	}
	if top["root/notes"] != "kept" || top["var/log/app.log"] != "" || top["var/cache/junk"] != "dir" {
		t.Errorf("layer: %q", top)
	}
	if _, ok := top["var/log/app.log"]; !ok {
		t.Error("the truncated log is not in the layer")
	}

	sq, err := Commit(context.Background(), st, src, Options{Tag: "x:sq", Exclude: rules, Squash: true, SourceDateEpoch: &epoch})
	if err != nil {
		t.Fatal(err)
	}
	if len(sq.Manifest.Layers) != 1 {
		t.Fatalf("squash: %d layers", len(sq.Manifest.Layers))
	}
	got, want := layerEntries(t, st, sq, 0), flattened(t, st, img)
	if !maps.Equal(got, want) {
		t.Errorf("squash with rules is not the commit flattened\n got %q\nwant %q", got, want)
	}
	if got["etc/ssh/ssh_host_key"] != "BASE-KEY" {
		t.Errorf("squash lost the base's file under an omit rule: %q", got["etc/ssh/ssh_host_key"])
	}
}

// TestCommitBadExcludeMakesNothing: a bad pattern is refused before the
// source is opened; the store is left as it was.
func TestCommitBadExcludeMakesNothing(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644)
	_, err = Commit(context.Background(), st, sourcing.Dir{Root: root}, Options{Tag: "x:1", Exclude: []diff.Rule{{Pattern: "tmp/*"}}})
	if !errors.Is(err, diff.ErrPattern) || !strings.Contains(err.Error(), `"tmp/*"`) {
		t.Fatalf("error %v, want ErrPattern naming the pattern", err)
	}
	ents, _ := os.ReadDir(filepath.Join(st.Root(), "blobs/sha256"))
	idx, _ := st.Index()
	if len(ents) != 0 || len(idx.Manifests) != 0 {
		t.Fatalf("left %d blobs and %d index entries", len(ents), len(idx.Manifests))
	}
}

// TestCommitCreatedByAndAnnotations: CreatedBy replaces the history's
// created_by; Annotations land on the manifest as the store reads it
// back, and the image ID does not change with them.
func TestCommitCreatedByAndAnnotations(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o644)
	epoch := time.Unix(1700000000, 0)
	plain, err := Commit(context.Background(), st, sourcing.Dir{Root: root}, Options{Tag: "a:plain", SourceDateEpoch: &epoch, CreatedBy: "snap capture: step 1"})
	if err != nil {
		t.Fatal(err)
	}
	if h := plain.Config.History; len(h) != 1 || h[0].CreatedBy != "snap capture: step 1" {
		t.Errorf("history %+v", h)
	}
	ann := map[string]string{"org.opencontainers.image.version": "3", "org.opencontainers.image.base.name": "base:1"}
	annotated, err := Commit(context.Background(), st, sourcing.Dir{Root: root}, Options{Tag: "a:ann", SourceDateEpoch: &epoch, CreatedBy: "snap capture: step 1", Annotations: ann})
	if err != nil {
		t.Fatal(err)
	}
	if annotated.ID != plain.ID {
		t.Errorf("annotations changed the image ID: %s vs %s", annotated.ID, plain.ID)
	}
	if annotated.ManifestDesc.Digest == plain.ManifestDesc.Digest {
		t.Error("annotated manifest has the plain one's digest")
	}
	back, err := st.Lookup("a:ann")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(back.Manifest.Annotations, ann) {
		t.Errorf("stored manifest annotations %v, want %v", back.Manifest.Annotations, ann)
	}
	if p, _ := st.Lookup("a:plain"); len(p.Manifest.Annotations) != 0 {
		t.Errorf("plain manifest has annotations %v", p.Manifest.Annotations)
	}
}
