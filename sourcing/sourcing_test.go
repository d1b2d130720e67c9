package sourcing_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// TestOptionalInterfaces: what a walker can do besides its changes it says
// through the contract's interfaces: a directory's walker is a Squasher
// whose Whole is the whole tree (lowers ignored) and a Merger (docker
// diff's listing, see diff.Rootfs.Merged); an overlay's a Merger whose
// Merged is docker diff's view of the same dirs and a Squasher (its merged
// view, see diff.Overlay.Whole).
func TestOptionalInterfaces(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o, err := sourcing.Dir{Root: root}.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if o.Base != nil || o.Close != nil {
		t.Errorf("a directory without base opened with base %v, close set %v", o.Base, o.Close != nil)
	}
	sq, ok := o.Changes.(sourcing.Squasher)
	if !ok {
		t.Fatalf("a directory's walker %T is no Squasher", o.Changes)
	}
	if _, ok := o.Changes.(sourcing.Merger); !ok {
		t.Errorf("a directory's walker %T is no Merger", o.Changes)
	}
	var listed []string
	if err := sq.Whole().Walk(context.Background(), func(c diff.Change) error { listed = append(listed, c.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"A /etc", "A /etc/motd"}; !slices.Equal(listed, want) {
		t.Errorf("whole lists %q, want %q", listed, want)
	}
	if w, ok := (diff.Rootfs{Root: root, Lowers: []string{"/l"}}).Whole().(diff.Rootfs); !ok || w.Root != root || w.Lowers != nil {
		t.Errorf("Whole of a rootfs with lowers is %#v", w)
	}

	var ov diff.Walker = diff.Overlay{Upper: "/u", Lowers: []string{"/l1", "/l2"}}
	m, ok := ov.(sourcing.Merger)
	if !ok {
		t.Fatal("an overlay walker is no Merger")
	}
	if _, ok := ov.(sourcing.Squasher); !ok {
		t.Error("an overlay walker is no Squasher")
	}
	if got, ok := m.Merged().(diff.Merged); !ok || got.Upper != "/u" || !slices.Equal(got.Lowers, []string{"/l1", "/l2"}) {
		t.Errorf("Merged is %#v", m.Merged())
	}
	// The init layer counts for docker diff's view, never for a squash.
	withInit := diff.Overlay{Upper: "/u", Lowers: []string{"/init", "/l1"}, Init: 1}
	if got := withInit.Merged().(diff.Merged); !slices.Equal(got.Lowers, []string{"/init", "/l1"}) {
		t.Errorf("Merged of an overlay with an init layer is %#v", got)
	}
}
