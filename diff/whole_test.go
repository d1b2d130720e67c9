package diff

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// wholeLowers is an image of two layers (the top one whites out doc/sub and
// makes keep opaque) under an init layer with the runtime's stubs.
func wholeLowers(t *testing.T) (init, top, base string) {
	t.Helper()
	base = baseTree(t)
	top = t.TempDir()
	write(t, filepath.Join(top, "keep/y"), "y")
	if err := unix.Lsetxattr(filepath.Join(top, "keep"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(top, "doc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(top, "doc/sub"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	init = t.TempDir()
	write(t, filepath.Join(init, "etc/hosts"), "")
	if err := os.Mkdir(filepath.Join(init, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	return init, top, base
}

// TestOverlayWholeIsTheMergedView: the squash of an overlay container is
// the merged view of its upper (made through a real mount, then
// unmounted) over the image's layers, every entry added, without the init
// layer's stubs; with Init 0 they are in it. Nothing is mounted by the walk.
func TestOverlayWholeIsTheMergedView(t *testing.T) {
	requireRoot(t)
	init, top, base := wholeLowers(t)
	lowers := []string{init, top, base}
	upper := overlay(t, strings.Join(lowers, ":"), func(m string) {
		edit(t, m)
		if err := os.Link(filepath.Join(m, "keep/y"), filepath.Join(m, "keep/y2")); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lsetxattr(filepath.Join(m, "opt/added"), "user.k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	})
	o := Overlay{Upper: upper, Lowers: lowers, Init: 1}
	got := changes(t, o.Whole())
	want := []string{"A /doc", "A /doc/new", "A /etc", "A /etc/motd", "A /keep", "A /keep/y", "A /keep/y2", "A /opt", "A /opt/added"}
	if !slices.Equal(got, want) {
		t.Fatalf("whole\n got %q\nwant %q", got, want)
	}
	es, _ := layer(t, o.Whole(), Options{})
	bodies := map[string]entry{}
	for _, e := range es {
		bodies[e.hdr.Name] = e
	}
	if bodies["etc/motd"].body != "changed\n" || bodies["keep/y"].body != "y" || bodies["doc/new"].body != "n" {
		t.Errorf("contents: motd %q, y %q, new %q", bodies["etc/motd"].body, bodies["keep/y"].body, bodies["doc/new"].body)
	}
	if h := bodies["keep/y2"].hdr; h == nil || h.Typeflag != '1' || h.Linkname != "keep/y" {
		t.Errorf("keep/y2 is no hardlink to keep/y: %+v", h)
	}
	if h := bodies["opt/added"].hdr; h == nil || h.PAXRecords["SCHILY.xattr.user.k"] != "v" {
		t.Errorf("opt/added lost its xattr: %+v", h)
	}
	for name := range bodies {
		if strings.Contains(name, ".wh.") || strings.Contains(name, "overlay") {
			t.Errorf("whole layer holds %s", name)
		}
	}

	withInit := changes(t, Overlay{Upper: upper, Lowers: lowers}.Whole())
	for _, p := range []string{"A /etc/hosts", "A /proc"} {
		if !slices.Contains(withInit, p) {
			t.Errorf("Init 0: %s missing from %q", p, withInit)
		}
	}
}

// TestOverlayWholeBadInput: an init count beyond the lowers and a missing
// upper are errors (the refusals of what an upper holds are in
// TestOverlayRefusals, for Walk and Whole alike).
func TestOverlayWholeBadInput(t *testing.T) {
	u := t.TempDir()
	if _, err := WriteLayer(context.Background(), discard{}, Overlay{Upper: u, Lowers: []string{u}, Init: 2}.Whole(), Options{}); err == nil {
		t.Error("more init layers than lowers: no error")
	}
	if _, err := WriteLayer(context.Background(), discard{}, Overlay{Upper: filepath.Join(u, "none")}.Whole(), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing upper: %v", err)
	}
}

// TestAUFSWhole: an AUFS branch's whiteout files and opaque marker apply
// to the lowers and never travel.
func TestAUFSWhole(t *testing.T) {
	base := baseTree(t)
	u := t.TempDir()
	write(t, filepath.Join(u, "etc/.wh.passwd"), "")
	write(t, filepath.Join(u, "doc/.wh..wh..opq"), "")
	write(t, filepath.Join(u, "doc/fresh"), "f")
	write(t, filepath.Join(u, ".wh..wh.plnk/123.456"), "")
	got := changes(t, Overlay{Upper: u, Lowers: []string{base}, Format: FormatAUFS}.Whole())
	want := []string{"A /doc", "A /doc/fresh", "A /etc", "A /etc/motd", "A /keep", "A /keep/x"}
	if !slices.Equal(got, want) {
		t.Fatalf("whole\n got %q\nwant %q", got, want)
	}
}
