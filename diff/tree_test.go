package diff

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenBeneathRefusesSymlinks checks both ways of opening beneath a root
// (openat2, and openat per component for kernels before 5.6): a symlink on
// any component is refused, even one that stays inside the root.
func TestOpenBeneathRefusesSymlinks(t *testing.T) {
	root, host := t.TempDir(), t.TempDir()
	write(t, filepath.Join(root, "d/f"), "inside")
	write(t, filepath.Join(host, "f"), "host")
	if err := os.Symlink(host, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d", filepath.Join(root, "in")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(root, "d/lf")); err != nil {
		t.Fatal(err)
	}
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	tests := []struct {
		rel  string
		want error // nil: opens, and reads "inside"
	}{
		{"d/f", nil},
		{"out/f", unix.ELOOP},
		{"in/f", unix.ELOOP},
		{"d/lf", unix.ELOOP},
		{"../" + filepath.Base(host) + "/f", unix.EXDEV},
	}
	for name, open := range map[string]func(int, string, int) (int, error){"openat2": openBeneath, "per component": openComponents} {
		for _, tc := range tests {
			fd, err := open(rfd, tc.rel, unix.O_RDONLY)
			if tc.want == nil {
				if err != nil {
					t.Errorf("%s %s: %v", name, tc.rel, err)
					continue
				}
				buf := make([]byte, 16)
				n, _ := unix.Read(fd, buf)
				unix.Close(fd)
				if string(buf[:n]) != "inside" {
					t.Errorf("%s %s read %q", name, tc.rel, buf[:n])
				}
				continue
			}
			if err == nil {
				unix.Close(fd)
			}
			// openat2 says EXDEV for "..", the fallback refuses it the same
			// way; openat(O_DIRECTORY|O_NOFOLLOW) of a symlink says ENOTDIR.
			if !errors.Is(err, tc.want) && !(tc.want == unix.ELOOP && errors.Is(err, unix.ENOTDIR)) {
				t.Errorf("%s %s: err %v, want %v", name, tc.rel, err, tc.want)
			}
		}
	}
}

// TestXattrsThroughProcFallback checks the path used where the kernel has
// no getxattrat/listxattrat (before 6.13): the same xattrs as through the
// directory's fd, and a symlink's own (none), never its target's.
func TestXattrsThroughProcFallback(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	write(t, filepath.Join(root, "f"), "x")
	if err := unix.Lsetxattr(filepath.Join(root, "f"), "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(root, "f"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(root, "l")); err != nil {
		t.Fatal(err)
	}
	d, err := openDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	for _, name := range []string{"f", "l"} {
		l1, o1, err := d.xattrs(name)
		if err != nil {
			t.Fatal(err)
		}
		l2, o2, err := readXattrs(d.procPath(name))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(l1, l2) || !maps.Equal(o1, o2) {
			t.Errorf("%s: at %v %v, through /proc %v %v", name, l1, o1, l2, o2)
		}
		if want := name == "f"; (l1["user.k"] == "v") != want || (o1["opaque"] == "y") != want {
			t.Errorf("%s: xattrs %v, overlay %v", name, l1, o1)
		}
	}
}
