package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOutputTargets: -o, --iidfile and save -o write into what is not a
// regular file (a device, a FIFO) instead of renaming over it, and through
// a symlink to what it points at, leaving the link.
func TestOutputTargets(t *testing.T) {
	requireRoot(t, "mknod")
	w := t.TempDir()
	t.Setenv("SNAP_ROOT", filepath.Join(w, "store"))
	rootfs := filepath.Join(w, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	os.WriteFile(filepath.Join(rootfs, "hello"), []byte("hi\n"), 0o644)
	tarball := filepath.Join(w, "rootfs.tar")
	os.WriteFile(tarball, tinyRootfs(t, map[string]string{"etc/motd": "hi\n"}), 0o644)
	if code := Run(t.Context(), []string{"snap", "import", tarball, "img:1"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("import failed")
	}

	// What each command writes, to check what arrived.
	writers := []struct {
		name  string
		args  func(target string) []string
		check func(t *testing.T, stdout string, got []byte) // got: what the target holds
	}{
		{"layer -o", func(o string) []string { return []string{"layer", "--rootfs", rootfs, "-o", o} },
			func(t *testing.T, _ string, got []byte) {
				if !bytes.Contains(got, []byte("hello")) || !bytes.Contains(got, []byte("hi\n")) {
					t.Errorf("the target holds %d bytes, not the layer", len(got))
				}
			}},
		{"import --iidfile", func(o string) []string { return []string{"import", tarball, "img:2", "--iidfile", o} },
			func(t *testing.T, stdout string, got []byte) {
				if id := strings.TrimSpace(stdout); string(got) != id || id == "" {
					t.Errorf("the target holds %q, want the image ID %q", got, id)
				}
			}},
		{"save -o", func(o string) []string { return []string{"save", "img:1", "-o", o} },
			func(t *testing.T, _ string, got []byte) {
				if !bytes.Contains(got, []byte("manifest.json")) {
					t.Errorf("the target holds %d bytes, not the archive", len(got))
				}
			}},
	}
	kind := func(p string) string {
		fi, err := os.Lstat(p)
		if err != nil {
			return err.Error()
		}
		switch m := fi.Mode(); {
		case m&os.ModeSymlink != 0:
			return "L"
		case m&os.ModeCharDevice != 0:
			return "Dc"
		case m&os.ModeNamedPipe != 0:
			return "p"
		case m.IsRegular():
			return "-"
		}
		return fi.Mode().String()
	}
	run := func(t *testing.T, args []string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := Run(t.Context(), append([]string{"snap"}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("snap %q: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			d := t.TempDir()
			t.Run("char device", func(t *testing.T) {
				dev := filepath.Join(d, "null")
				if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
					t.Fatal(err)
				}
				run(t, wr.args(dev))
				if k := kind(dev); k != "Dc" {
					t.Errorf("the device is now %q", k)
				}
				link := filepath.Join(d, "null-link")
				os.Symlink("null", link)
				run(t, wr.args(link))
				if kind(link) != "L" || kind(dev) != "Dc" {
					t.Errorf("link %q, device %q: want both kept", kind(link), kind(dev))
				}
			})
			t.Run("fifo with a reader", func(t *testing.T) {
				fifo := filepath.Join(d, "fifo")
				if err := unix.Mkfifo(fifo, 0o600); err != nil {
					t.Fatal(err)
				}
				// hold is a reader and a writer, so that no open blocks and
				// the reader sees EOF only once hold and snap are done.
				hold, err := os.OpenFile(fifo, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				r, err := os.Open(fifo)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				got := make(chan []byte)
				go func() {
					b, _ := io.ReadAll(r)
					got <- b
				}()
				var stdout, stderr bytes.Buffer
				code := Run(t.Context(), append([]string{"snap"}, wr.args(fifo)...), &stdout, &stderr)
				hold.Close()
				b := <-got
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr.String())
				}
				if k := kind(fifo); k != "p" {
					t.Errorf("the FIFO is now %q", k)
				}
				wr.check(t, stdout.String(), b)
			})
			t.Run("symlink to a regular file", func(t *testing.T) {
				os.Mkdir(filepath.Join(d, "real"), 0o755)
				target := filepath.Join(d, "real", "out")
				os.WriteFile(target, []byte("old"), 0o640)
				// through a symlinked directory, where "../" is the real parent's
				os.Symlink("real", filepath.Join(d, "via"))
				os.Symlink("../real/out", filepath.Join(d, "real", "link"))
				for _, link := range []string{filepath.Join(d, "real", "link"), filepath.Join(d, "via", "link")} {
					stdout := run(t, wr.args(link))
					if kind(filepath.Join(d, "real", "link")) != "L" {
						t.Fatalf("the symlink was replaced: %q", kind(link))
					}
					b, _ := os.ReadFile(target)
					wr.check(t, stdout, b)
					if fi, _ := os.Stat(target); fi.Mode() != 0o640 {
						t.Errorf("the target's mode is %v, want it kept (0640)", fi.Mode())
					}
				}
			})
			t.Run("dangling symlink", func(t *testing.T) {
				link := filepath.Join(d, "dangling")
				os.Symlink("made", link)
				stdout := run(t, wr.args(link))
				b, err := os.ReadFile(filepath.Join(d, "made"))
				if kind(link) != "L" || err != nil {
					t.Fatalf("link %q, target %v", kind(link), err)
				}
				wr.check(t, stdout, b)
			})
			t.Run("regular file and new file", func(t *testing.T) {
				for _, p := range []string{filepath.Join(d, "plain"), filepath.Join(d, "new")} {
					if strings.HasSuffix(p, "plain") {
						os.WriteFile(p, []byte("old"), 0o644)
					}
					stdout := run(t, wr.args(p))
					b, _ := os.ReadFile(p)
					wr.check(t, stdout, b)
				}
				if left, _ := filepath.Glob(filepath.Join(d, ".*tmp-*")); len(left) > 0 {
					t.Errorf("temp files left: %q", left)
				}
			})
			t.Run("directory", func(t *testing.T) {
				var stderr bytes.Buffer
				if code := Run(t.Context(), append([]string{"snap"}, wr.args(d)...), &bytes.Buffer{}, &stderr); code != 1 ||
					!strings.Contains(stderr.String(), "is a directory") {
					t.Errorf("exit %d, stderr %q: want exit 1, naming the directory", code, stderr.String())
				}
			})
		})
	}
}
