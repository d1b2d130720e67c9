package diff

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFuseOverlayfsUpper: fuse-overlayfs' upper as it writes one (checked
// with fuse-overlayfs 1.10 under dockerd): each directory it creates is
// opaque by xattr and holds a .wh..wh..opq file and a .wh..opq whiteout;
// a copied-up file carries user.fuseoverlayfs.origin. Its markers are no
// entries of the layer, the xattr is not carried, a new directory gets no
// opaque marker (it hides nothing), a replaced one does; read as a plain
// overlay upper the same dir is refused.
func TestFuseOverlayfsUpper(t *testing.T) {
	requireRoot(t)
	lower, upper := t.TempDir(), t.TempDir()
	write(t, filepath.Join(lower, "etc/passwd"), "root\n")
	write(t, filepath.Join(lower, "old/f"), "f\n")
	write(t, filepath.Join(upper, "etc/passwd"), "root\n")
	write(t, filepath.Join(upper, "new/f"), "n\n")
	write(t, filepath.Join(upper, "old/g"), "g\n")
	for _, d := range []string{"new", "old"} {
		write(t, filepath.Join(upper, d, ".wh..wh..opq"), "")
		if err := unix.Mknod(filepath.Join(upper, d, ".wh..opq"), unix.S_IFCHR|0o700, 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(filepath.Join(upper, d), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(filepath.Join(upper, "etc/passwd"), "user.fuseoverlayfs.origin", []byte("etc/passwd"), 0); err != nil {
		t.Fatal(err)
	}
	// A copy-up keeps the file's times.
	fi, err := os.Stat(filepath.Join(lower, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(upper, "etc/passwd"), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(lower, "etc/gone"), "g\n")
	if err := unix.Mknod(filepath.Join(upper, "etc/gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}

	es, _ := layer(t, Overlay{Upper: upper, Lowers: []string{lower}, Format: FormatFuseOverlayfs}, Options{})
	want := []string{"etc/", "etc/.wh.gone", "etc/passwd", "new/", "new/f", "old/", "old/.wh..wh..opq", "old/g"}
	if got := names(es); !slices.Equal(got, want) {
		t.Errorf("layer %q, want %q", got, want)
	}
	for _, e := range es {
		if e.hdr.Name == "etc/passwd" && len(e.hdr.PAXRecords) != 0 {
			t.Errorf("etc/passwd carries %v", e.hdr.PAXRecords)
		}
	}
	got := changes(t, Merged{Upper: upper, Lowers: []string{lower}, Format: FormatFuseOverlayfs})
	if want := []string{"C /etc", "D /etc/gone", "A /new", "A /new/f", "C /old", "D /old/f", "A /old/g"}; !slices.Equal(got, want) {
		t.Errorf("merged %q, want %q", got, want)
	}
	if err := (Overlay{Upper: upper, Lowers: []string{lower}}).Walk(t.Context(), func(Change) error { return nil }); err == nil {
		t.Error("a plain overlay upper holding .wh. files was accepted")
	}
}

// TestRootfsList: docker diff's listing of a naive-diff driver's container
// names each deleted name (a layer writes one opaque marker instead) and
// does not count a new hardlink as a change to the file it links to (a
// layer carries that file whole).
func TestRootfsList(t *testing.T) {
	lower, root := t.TempDir(), t.TempDir()
	write(t, filepath.Join(lower, "d/a"), "a\n")
	write(t, filepath.Join(lower, "etc/passwd"), "root\n")
	run(t, "cp", "-a", lower+"/.", root+"/")
	if err := os.Remove(filepath.Join(root, "d/a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "etc/passwd"), filepath.Join(root, "etc/passwd.hard")); err != nil {
		t.Fatal(err)
	}
	r := Rootfs{Root: root, Lowers: []string{lower}}
	if got, want := changes(t, r), []string{"C /d (opaque)", "C /etc", "C /etc/passwd", "A /etc/passwd.hard"}; !slices.Equal(got, want) {
		t.Errorf("layer changes %q, want %q", got, want)
	}
	if got, want := changes(t, r.Merged()), []string{"C /d", "D /d/a", "C /etc", "A /etc/passwd.hard"}; !slices.Equal(got, want) {
		t.Errorf("listing %q, want %q", got, want)
	}
}
