package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"snap/internal/testenv"
)

// requireRoot: overlay mounts, whiteout devices and trusted.* xattrs are
// what these tests are about.
func requireRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t, "overlay mounts, whiteout devices and trusted.* xattrs")
}

// eachMode runs test on an empty directory root, read once as a rootfs
// (subtest "rootfs") and once as an overlay's upper ("overlay"): the two
// walkers a container's changes go through.
func eachMode(t *testing.T, test func(t *testing.T, root string, src Walker)) {
	t.Helper()
	for _, mode := range []string{"rootfs", "overlay"} {
		t.Run(mode, func(t *testing.T) {
			root := t.TempDir()
			var src Walker = Rootfs{Root: root}
			if mode == "overlay" {
				src = Overlay{Upper: root}
			}
			test(t, root, src)
		})
	}
}

func write(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// overlay mounts lower/upper at a merged dir, lets change work through the
// mount as a container would, and unmounts.
func overlay(t *testing.T, lower string, change func(merged string)) (upper string) {
	t.Helper()
	requireRoot(t)
	w := t.TempDir()
	upper, work, merged := filepath.Join(w, "upper"), filepath.Join(w, "work"), filepath.Join(w, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, 0)
	change(merged)
	return upper
}

func changes(t *testing.T, src Walker) []string {
	t.Helper()
	var out []string
	if err := src.Walk(context.Background(), func(c Change) error {
		s := c.String()
		if c.Opaque {
			s += " (opaque)"
		}
		out = append(out, s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

type entry struct {
	hdr  *tar.Header
	body string
}

func layer(t *testing.T, src Walker, opts Options) ([]entry, Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := WriteLayer(context.Background(), &buf, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, res
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{h, string(b)})
	}
}

func names(es []entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.hdr.Name)
	}
	return out
}
