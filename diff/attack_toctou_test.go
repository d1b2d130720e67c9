package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mutateAt is a Walker that changes the tree when the walk yields path at,
// before the writer sees that change: the window a racing process has
// between the walk listing an entry and the writer opening it, made
// deterministic.
type mutateAt struct {
	src    Walker
	at     string
	mutate func() error
}

func (m mutateAt) Walk(ctx context.Context, fn func(Change) error) error {
	return m.src.Walk(ctx, func(c Change) error {
		if c.Path == m.at {
			if err := m.mutate(); err != nil {
				return err
			}
		}
		return fn(c)
	})
}

// TestWhatChangesAfterTheWalkNeverBringsTheHostIn replays, one at a time
// and without timing, each move a process inside the tree (or racing on a
// rootfs) can make between the walk listing a file and the writer reading
// it: a file or its directory replaced by a symlink to the host, by a
// hardlink of a host file, by a fifo; the root itself moved away and a
// symlink to the host put in its place. Small files (read ahead) and large
// ones (streamed) both. The layer must never hold the host's bytes; the
// commit either fails with ErrChanged naming a path under /d (d/big is
// yielded before d/f and may be opened after the move) or, where nothing it listed changed
// (the root's path, which it holds open), succeeds with the tree's bytes.
func TestWhatChangesAfterTheWalkNeverBringsTheHostIn(t *testing.T) {
	requireRoot(t)
	const canary = "HOST-CANARY-0123456789"
	bigCanary := strings.Repeat(canary, (prefetchMax*2)/len(canary))
	inside, bigInside := strings.Repeat("i", len(canary)), strings.Repeat("i", len(bigCanary))
	type env struct{ root, host string }
	tests := []struct {
		name   string
		at     string
		mutate func(e env) error
		ok     bool // nothing listed changed: the layer is written
	}{
		{"file replaced by a symlink to a host file", "d/f", func(e env) error {
			return replace(filepath.Join(e.root, "d/f"), func(p string) error { return os.Symlink(filepath.Join(e.host, "f"), p) })
		}, false},
		{"large file replaced by a symlink to a host file", "d/big", func(e env) error {
			return replace(filepath.Join(e.root, "d/big"), func(p string) error { return os.Symlink(filepath.Join(e.host, "big"), p) })
		}, false},
		{"directory exchanged with a symlink to the host", "d/f", func(e env) error {
			return unix.Renameat2(unix.AT_FDCWD, filepath.Join(e.root, "d"), unix.AT_FDCWD, filepath.Join(e.root, "s"), unix.RENAME_EXCHANGE)
		}, false},
		{"directory exchanged with a symlink to the host (large file)", "d/big", func(e env) error {
			return unix.Renameat2(unix.AT_FDCWD, filepath.Join(e.root, "d"), unix.AT_FDCWD, filepath.Join(e.root, "s"), unix.RENAME_EXCHANGE)
		}, false},
		{"file replaced by a hardlink of a host file", "d/f", func(e env) error {
			return replace(filepath.Join(e.root, "d/f"), func(p string) error { return os.Link(filepath.Join(e.host, "f"), p) })
		}, false},
		{"file replaced by a fifo", "d/f", func(e env) error {
			return replace(filepath.Join(e.root, "d/f"), func(p string) error { return unix.Mkfifo(p, 0o644) })
		}, false},
		{"large file replaced by a fifo", "d/big", func(e env) error {
			return replace(filepath.Join(e.root, "d/big"), func(p string) error { return unix.Mkfifo(p, 0o644) })
		}, false},
		{"file's directory renamed, a host directory bound in its place", "d/f", func(e env) error {
			if err := os.Rename(filepath.Join(e.root, "d"), filepath.Join(e.root, "d.old")); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(e.root, "d"), 0o755); err != nil {
				return err
			}
			return unix.Mount(e.host, filepath.Join(e.root, "d"), "", unix.MS_BIND, "")
		}, false},
		{"root moved away, a symlink to the host in its place", "d/f", func(e env) error {
			if err := os.Rename(e.root, e.root+".moved"); err != nil {
				return err
			}
			return os.Symlink(e.host, e.root)
		}, true},
	}
	for _, mode := range []string{"rootfs", "overlay", "rootfs-fallback", "overlay-fallback"} {
		for _, tc := range tests {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				if strings.HasSuffix(mode, "-fallback") { // kernels without openat2 (5.6) and getxattrat (6.13)
					noOpenat2.Store(true)
					noXattrat.Store(true)
					t.Cleanup(func() { noOpenat2.Store(false); noXattrat.Store(false) })
				}
				e := env{root: filepath.Join(t.TempDir(), "root"), host: t.TempDir()}
				write(t, filepath.Join(e.root, "d/f"), inside)
				write(t, filepath.Join(e.root, "d/big"), bigInside)
				write(t, filepath.Join(e.host, "f"), canary)
				write(t, filepath.Join(e.host, "big"), bigCanary)
				write(t, filepath.Join(e.host, "d/f"), canary)
				if err := os.Symlink(e.host, filepath.Join(e.root, "s")); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					unix.Unmount(filepath.Join(e.root, "d"), unix.MNT_DETACH)
					os.Remove(e.root) // the symlink, if the root moved
					os.RemoveAll(e.root + ".moved")
				})
				var src Walker = Rootfs{Root: e.root}
				if strings.HasPrefix(mode, "overlay") {
					src = Overlay{Upper: e.root}
				}
				var buf bytes.Buffer
				_, err := WriteLayer(context.Background(), &buf, mutateAt{src: src, at: tc.at, mutate: func() error { return tc.mutate(e) }}, Options{})
				if bytes.Contains(buf.Bytes(), []byte(canary)) {
					t.Fatalf("the layer holds the host's bytes (err %v)", err)
				}
				switch {
				case tc.ok && err != nil:
					t.Fatalf("err = %v, want the layer written from the tree the walk holds open", err)
				case tc.ok && !bytes.Contains(buf.Bytes(), []byte(inside)):
					t.Fatal("the layer lacks the tree's own d/f")
				case !tc.ok && !errors.Is(err, ErrChanged):
					t.Fatalf("err = %v, want %v", err, ErrChanged)
				case !tc.ok && !strings.Contains(err.Error(), "/d/"):
					t.Fatalf("err = %v, want it to name the path under /d", err)
				}
			})
		}
	}
}

// replace removes p and makes something else at the same path.
func replace(p string, mk func(string) error) error {
	if err := os.Remove(p); err != nil {
		return err
	}
	return mk(p)
}

// TestNothingInTheTreeHangsTheWriter: fifos in the tree (listed as fifos:
// a header each, never opened), one of them over a fifo of the lower, and
// a fifo, a file and a directory the writer finds in place of what the walk
// listed. Each layer is written or refused; none hangs.
func TestNothingInTheTreeHangsTheWriter(t *testing.T) {
	requireRoot(t)
	for _, mode := range []string{"rootfs", "overlay"} {
		for _, swap := range []string{"none", "fifo for file", "file for fifo", "fifo for directory"} {
			t.Run(mode+"/"+swap, func(t *testing.T) {
				root, lower := t.TempDir(), t.TempDir()
				for _, d := range []string{root, lower} {
					if err := unix.Mkfifo(filepath.Join(d, "fifo"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				if err := unix.Mkfifo(filepath.Join(root, "newfifo"), 0o600); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(root, "x/file"), "f")
				var src Walker = Rootfs{Root: root, Lowers: []string{lower}}
				if mode == "overlay" {
					src = Overlay{Upper: root, Lowers: []string{lower}}
				}
				at, mutate := "", func() error { return nil }
				switch swap {
				case "fifo for file":
					at, mutate = "x/file", func() error {
						return replace(filepath.Join(root, "x/file"), func(p string) error { return unix.Mkfifo(p, 0o644) })
					}
				case "file for fifo":
					at, mutate = "newfifo", func() error {
						return replace(filepath.Join(root, "newfifo"), func(p string) error { return os.WriteFile(p, []byte("now a file"), 0o644) })
					}
				case "fifo for directory":
					at, mutate = "x", func() error {
						if err := os.Rename(filepath.Join(root, "x"), filepath.Join(root, "x.old")); err != nil {
							return err
						}
						return unix.Mkfifo(filepath.Join(root, "x"), 0o644)
					}
				}
				var buf bytes.Buffer
				_, err := WriteLayer(context.Background(), &buf, mutateAt{src: src, at: at, mutate: mutate}, Options{})
				if swap == "none" || swap == "file for fifo" {
					// The writer opens nothing for a fifo: what it listed is what it writes.
					if err != nil {
						t.Fatal(err)
					}
					es, err := readTar(buf.Bytes())
					if err != nil {
						t.Fatal(err)
					}
					i := slices.IndexFunc(es, func(e entry) bool { return e.hdr.Name == "newfifo" })
					if i < 0 || es[i].hdr.Typeflag != tar.TypeFifo {
						t.Fatalf("entries %v: want newfifo as a fifo", names(es))
					}
					return
				}
				if err != nil && !errors.Is(err, ErrChanged) {
					t.Fatalf("err = %v, want nil or %v", err, ErrChanged)
				}
			})
		}
	}
}
