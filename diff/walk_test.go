package diff

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func baseTree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	write(t, filepath.Join(d, "etc/motd"), "hello\n")
	write(t, filepath.Join(d, "etc/passwd"), "root\n")
	write(t, filepath.Join(d, "doc/a"), "a")
	write(t, filepath.Join(d, "doc/sub/b"), "b")
	write(t, filepath.Join(d, "keep/x"), "x")
	return d
}

// edit changes a baseTree as a container would: a file changed, one
// deleted, a directory replaced, one added.
func edit(t *testing.T, root string) {
	t.Helper()
	write(t, filepath.Join(root, "etc/motd"), "changed\n")
	if err := os.Remove(filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "doc")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "doc/new"), "n")
	write(t, filepath.Join(root, "opt/added"), "+")
}

func TestOverlayWalkThroughRealMount(t *testing.T) {
	lower := baseTree(t)
	upper := overlay(t, lower, func(m string) { edit(t, m) })
	got := changes(t, Overlay{Upper: upper, Lowers: []string{lower}})
	want := []string{"C /doc (opaque)", "A /doc/new", "C /etc", "C /etc/motd", "D /etc/passwd", "A /opt", "A /opt/added"}
	if !slices.Equal(got, want) {
		t.Fatalf("changes\n got %q\nwant %q", got, want)
	}
	es, _ := layer(t, Overlay{Upper: upper}, Options{})
	wantNames := []string{"doc/", "doc/.wh..wh..opq", "doc/new", "etc/", "etc/motd", "etc/.wh.passwd", "opt/", "opt/added"}
	if !slices.Equal(names(es), wantNames) {
		t.Fatalf("entries\n got %q\nwant %q", names(es), wantNames)
	}
	if es[5].hdr.Mode != 0o600 || es[5].hdr.Size != 0 || es[5].hdr.Typeflag != '0' {
		t.Errorf("whiteout header %+v", es[5].hdr)
	}
	if es[4].body != "changed\n" {
		t.Errorf("motd body %q", es[4].body)
	}
}

func TestOverlayRefusals(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name  string
		setup func(upper string)
		want  string
	}{
		{"redirect", func(u string) {
			os.Mkdir(filepath.Join(u, "moved"), 0o755)
			unix.Lsetxattr(filepath.Join(u, "moved"), "trusted.overlay.redirect", []byte("/old"), 0)
		}, ErrUpperIncomplete.Error()},
		{"metacopy", func(u string) {
			write(t, filepath.Join(u, "f"), "")
			unix.Lsetxattr(filepath.Join(u, "f"), "trusted.overlay.metacopy", nil, 0)
		}, ErrUpperIncomplete.Error()},
		{"user-redirect", func(u string) {
			os.Mkdir(filepath.Join(u, "d"), 0o755)
			unix.Lsetxattr(filepath.Join(u, "d"), "user.overlay.redirect", []byte("/x"), 0)
		}, "/d"},
		{"wh-name", func(u string) { write(t, filepath.Join(u, "etc/.wh.evil"), "x") }, "/etc/.wh.evil"},
		{"aufs-meta-name", func(u string) { write(t, filepath.Join(u, ".wh..wh.x"), "x") }, "/.wh..wh.x"},
	}
	for _, tc := range tests {
		// The squash of the same upper (its merged view over a lower that
		// has the redirected and copied-up paths) refuses it too.
		for _, whole := range []bool{false, true} {
			name := tc.name
			if whole {
				name += "/whole"
			}
			t.Run(name, func(t *testing.T) {
				u := t.TempDir()
				tc.setup(u)
				var src Walker = Overlay{Upper: u}
				if whole {
					src = Overlay{Upper: u, Lowers: []string{baseTree(t)}}.Whole()
				}
				_, err := WriteLayer(context.Background(), discard{}, src, Options{})
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one naming %q", err, tc.want)
				}
			})
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestAUFSBranch(t *testing.T) {
	lower := baseTree(t)
	u := t.TempDir()
	write(t, filepath.Join(u, "etc/.wh.passwd"), "")
	write(t, filepath.Join(u, "doc/.wh..wh..opq"), "")
	write(t, filepath.Join(u, "doc/fresh"), "f")
	write(t, filepath.Join(u, ".wh..wh.plnk/123.456"), "")
	write(t, filepath.Join(u, ".wh..wh.aufs"), "")
	got := changes(t, Overlay{Upper: u, Lowers: []string{lower}, Format: FormatAUFS})
	want := []string{"C /doc (opaque)", "A /doc/fresh", "C /etc", "D /etc/passwd"}
	if !slices.Equal(got, want) {
		t.Fatalf("changes\n got %q\nwant %q", got, want)
	}
	es, _ := layer(t, Overlay{Upper: u, Format: FormatAUFS}, Options{})
	wantNames := []string{"doc/", "doc/.wh..wh..opq", "doc/fresh", "etc/", "etc/.wh.passwd"}
	if !slices.Equal(names(es), wantNames) {
		t.Fatalf("entries\n got %q\nwant %q", names(es), wantNames)
	}
}

// copyTar copies a tree through GNU tar, which keeps whole-second mtimes:
// the copy must still match its source.
func copyTar(t *testing.T, src string) string {
	dst := t.TempDir()
	run(t, "sh", "-c", "tar -C "+src+" --xattrs -cf - . | tar -C "+dst+" --xattrs --format=ustar -xpf -")
	return dst
}

func TestRootfsAgainstLowers(t *testing.T) {
	requireRoot(t)
	base := baseTree(t)
	// A second lower on top: hides doc/sub through a whiteout and makes keep opaque.
	top := t.TempDir()
	write(t, filepath.Join(top, "etc/added-in-top"), "t")
	if err := unix.Mknod(filepath.Join(top, "doc/sub"), unix.S_IFCHR, 0); err != nil {
		if err := os.MkdirAll(filepath.Join(top, "doc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(filepath.Join(top, "doc/sub"), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(top, "keep/y"), "y")
	if err := unix.Lsetxattr(filepath.Join(top, "keep"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	lowers := []string{top, base}
	merged := t.TempDir()
	var upper string
	func() {
		upper = overlay(t, strings.Join(lowers, ":"), func(m string) {
			run(t, "cp", "-a", m+"/.", merged+"/")
		})
	}()
	_ = upper

	tests := []struct {
		name   string
		change func(root string)
		want   []string
	}{
		{"unchanged copy", func(string) {}, nil},
		{"delete dir is one whiteout", func(r string) { os.RemoveAll(filepath.Join(r, "doc")) }, []string{"D /doc"}},
		{"modify and add", func(r string) {
			write(t, filepath.Join(r, "etc/motd"), "other!")
			write(t, filepath.Join(r, "keep/z/new"), "n")
		}, []string{"C /etc", "C /etc/motd", "C /keep", "A /keep/z", "A /keep/z/new"}},
		{"chmod only", func(r string) { os.Chmod(filepath.Join(r, "etc/passwd"), 0o600) }, []string{"C /etc", "C /etc/passwd"}},
		{"xattr only", func(r string) {
			unix.Lsetxattr(filepath.Join(r, "etc/passwd"), "user.k", []byte("v"), 0)
		}, []string{"C /etc", "C /etc/passwd"}},
		{"mtime only", func(r string) {
			os.Chtimes(filepath.Join(r, "etc/motd"), time.Unix(5, 0), time.Unix(5, 0))
		}, []string{"C /etc", "C /etc/motd"}},
		{"type change", func(r string) {
			os.Remove(filepath.Join(r, "etc/motd"))
			os.Symlink("passwd", filepath.Join(r, "etc/motd"))
		}, []string{"C /etc", "C /etc/motd"}},
		{"emptied dir is opaque, not a whiteout per name", func(r string) {
			os.Remove(filepath.Join(r, "doc/a"))
			write(t, filepath.Join(r, "doc/fresh"), "f")
		}, []string{"C /doc (opaque)", "A /doc/fresh"}},
		{"whited-out name comes back", func(r string) { write(t, filepath.Join(r, "doc/sub"), "file now") }, []string{"C /doc", "A /doc/sub"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTar(t, merged)
			tc.change(root)
			got := changes(t, Rootfs{Root: root, Lowers: lowers})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("changes\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestRedirectAndMetacopyMountsAreRefused makes the uppers for real: an
// overlay mounted with redirect_dir=on renames a lower directory by xattr,
// one with metacopy=on copies up only the metadata of a chmod'ed file. Either
// upper alone misses the content, so snap must refuse it and name --rootfs.
func TestRedirectAndMetacopyMountsAreRefused(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name, opts string
		change     func(m string) error
	}{
		{"redirect_dir", "redirect_dir=on", func(m string) error { return os.Rename(filepath.Join(m, "doc"), filepath.Join(m, "moved")) }},
		{"metacopy", "redirect_dir=on,metacopy=on", func(m string) error { return os.Chmod(filepath.Join(m, "etc/motd"), 0o600) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lower := baseTree(t)
			w := t.TempDir()
			upper, work, merged := filepath.Join(w, "upper"), filepath.Join(w, "work"), filepath.Join(w, "merged")
			for _, d := range []string{upper, work, merged} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work+","+tc.opts); err != nil {
				t.Fatalf("mount overlay with %s: %v", tc.opts, err)
			}
			err := tc.change(merged)
			unix.Unmount(merged, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = WriteLayer(context.Background(), discard{}, Overlay{Upper: upper}, Options{})
			if !errors.Is(err, ErrUpperIncomplete) {
				t.Fatalf("err = %v, want ErrUpperIncomplete", err)
			}
		})
	}
}
