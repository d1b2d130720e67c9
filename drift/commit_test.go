package drift

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"snap/commit"
	"snap/compression"
	"snap/internal/testenv"
	"snap/sourcing"
	"snap/store"
)

// The drift between images snap commits from a dir:// tree is what was
// done to the tree, each edit once: snap's own layers (its whiteouts, its
// parent directories, zstd) read back. Every mtime is reset to one second,
// so the edit of the same size is found by its content alone.
func TestCommittedTreesDrift(t *testing.T) {
	testenv.Root(t, "a dir:// commit on a base (its layers unpacked with their owners)")
	st, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	write := func(name, body string, mode os.FileMode) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	settle := func() { // one mtime everywhere: metadata cannot tell an edit
		err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chtimes(p, t0, t0)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	write("etc/motd", "hello", 0o644)
	write("etc/gone", "x", 0o644)
	write("usr/bin/tool", "v1", 0o644)
	write("d/a", "a", 0o644)
	write("keep/same", "same", 0o644)
	settle()
	ctx := t.Context()
	opts := commit.Options{Compression: compression.Zstd}
	opts.Tag = "golden:1"
	base, err := commit.Commit(ctx, st, sourcing.Dir{Root: root}, opts)
	if err != nil {
		t.Fatal(err)
	}

	write("etc/motd", "HELLO", 0o644)
	if err := os.Remove(filepath.Join(root, "etc/gone")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "usr/bin/tool"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	write("d", "file", 0o644)
	write("opt/new", "new", 0o600)
	settle()
	opts.Tag = "golden:2"
	next, err := commit.Commit(ctx, st, sourcing.Dir{Root: root, Base: "golden:1"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Compare(ctx, st, base, next)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"C /d  (4 B)", "D /etc/gone  (1 B)", "C /etc/motd  (5 B)", "A /opt", "A /opt/new  (3 B)", "C /usr/bin/tool  (2 B)"}
	if !slices.Equal(lines(got), want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines(got), "\n"), strings.Join(want, "\n"))
	}
}
