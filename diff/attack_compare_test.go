package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	archive "github.com/moby/go-archive"
	"golang.org/x/sys/unix"
)

// TestRapidEditsThroughUnpackedLayers is issue 8 item 1 end to end inside
// the package: 100 edit -> commit cycles of a dir:// rootfs, each layer
// unpacked the way the store unpacks lowers (go-archive, overlay
// whiteouts, whole-second mtimes) and stacked under the next commit. Every
// edit keeps the size and lands in the same second as the last; they are
// made every way an editor makes them (in place, shrunk then grown back,
// replaced by rename, reverted to an older layer's bytes, mtime put back).
// Each layer must hold the new bytes.
func TestRapidEditsThroughUnpackedLayers(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	write(t, filepath.Join(root, "f"), "v000")
	write(t, filepath.Join(root, "sub/g"), "v000")
	write(t, filepath.Join(root, "keep"), "unchanged")
	var lowers []string // top-most first
	commit := func() []entry {
		t.Helper()
		var buf bytes.Buffer
		if _, err := WriteLayer(context.Background(), &buf, Rootfs{Root: root, Lowers: lowers}, Options{}); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := archive.Unpack(bytes.NewReader(buf.Bytes()), dir, &archive.TarOptions{WhiteoutFormat: archive.OverlayWhiteoutFormat}); err != nil {
			t.Fatal(err)
		}
		lowers = append([]string{dir}, lowers...)
		es, err := readTar(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	commit()
	edits := []struct {
		name string
		edit func(p, body string) error
	}{
		{"in place", func(p, body string) error { return os.WriteFile(p, []byte(body), 0o644) }},
		{"shrunk then grown", func(p, body string) error {
			if err := os.Truncate(p, 0); err != nil {
				return err
			}
			return os.WriteFile(p, []byte(body), 0o644)
		}},
		{"replaced by rename", func(p, body string) error {
			if err := os.WriteFile(p+".tmp", []byte(body), 0o644); err != nil {
				return err
			}
			return os.Rename(p+".tmp", p)
		}},
		{"mtime put back to the whole second before", func(p, body string) error {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				return err
			}
			ts := []unix.Timespec{{Sec: st.Mtim.Sec}, {Sec: st.Mtim.Sec}}
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
		}},
	}
	for i := 1; i <= 100; i++ {
		body := fmt.Sprintf("v%03d", i)
		if i%10 == 0 {
			body = fmt.Sprintf("v%03d", i-2) // back to what the layer below the last one holds
		}
		ed := edits[i%len(edits)]
		for _, p := range []string{"f", "sub/g"} {
			if err := ed.edit(filepath.Join(root, p), body); err != nil {
				t.Fatal(err)
			}
		}
		es := commit()
		for _, p := range []string{"f", "sub/g"} {
			j := slices.IndexFunc(es, func(e entry) bool { return e.hdr.Name == p })
			if j < 0 || es[j].body != body {
				t.Fatalf("round %d (%s): the layer %v lacks /%s = %q", i, ed.name, names(es), p, body)
			}
		}
		if slices.ContainsFunc(es, func(e entry) bool { return e.hdr.Name == "keep" }) {
			t.Fatalf("round %d: the unchanged /keep is in the layer", i)
		}
	}
}

// TestEveryKindOfEditIsSeen: each edit a file can get that keeps its size
// and its second (the lower, unpacked from a tar, has whole seconds; the
// copy is made by GNU tar, whole seconds too) must be reported, by both
// walkers that compare; a rewrite with the same bytes and a touch back to
// the same second must not (the layer would grow with every commit).
func TestEveryKindOfEditIsSeen(t *testing.T) {
	requireRoot(t)
	big := strings.Repeat("0123456789abcdef", 3*compareChunk/16)
	tests := []struct {
		name    string
		edit    func(p string) error // p is the root's f
		changed bool
	}{
		{"same bytes rewritten, second put back", func(p string) error { return rewriteKeepTime(p, []byte(big)) }, false},
		{"one byte in the middle of a large file", func(p string) error {
			b := []byte(big)
			b[len(b)/2] ^= 1
			return rewriteKeepTime(p, b)
		}, true},
		{"last byte", func(p string) error {
			b := []byte(big)
			b[len(b)-1] ^= 1
			return rewriteKeepTime(p, b)
		}, true},
		{"chmod only", func(p string) error { return os.Chmod(p, 0o600) }, true},
		{"setuid bit only", func(p string) error { return os.Chmod(p, 0o644|os.ModeSetuid) }, true},
		{"owner only", func(p string) error { return os.Lchown(p, 1, 1) }, true},
		{"xattr added", func(p string) error { return unix.Lsetxattr(p, "user.k", []byte("v"), 0) }, true},
		{"security.capability added", func(p string) error {
			// vfs_cap_data v2: cap_net_bind_service permitted, effective.
			return unix.Lsetxattr(p, "security.capability", []byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0)
		}, true},
		{"replaced by a hardlink of an equal file", func(p string) error {
			if err := os.Remove(p); err != nil {
				return err
			}
			return os.Link(filepath.Join(filepath.Dir(p), "twin"), p)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lower := t.TempDir()
			write(t, filepath.Join(lower, "f"), big)
			write(t, filepath.Join(lower, "twin"), big)
			for _, n := range []string{"f", "twin"} {
				setMtime(t, filepath.Join(lower, n), 1_700_000_000, 0)
			}
			root := copyTar(t, lower)
			if err := tc.edit(filepath.Join(root, "f")); err != nil {
				t.Fatal(err)
			}
			var want []string
			if tc.changed {
				want = []string{"C /f"}
			}
			if tc.name == "replaced by a hardlink of an equal file" {
				want = append(want, "C /twin") // its link count changed: it travels so /f can link to it
			}
			if got := changes(t, Rootfs{Root: root, Lowers: []string{lower}}); !slices.Equal(got, want) {
				t.Errorf("Rootfs: changes %q, want %q", got, want)
			}
			if tc.name == "replaced by a hardlink of an equal file" {
				return // docker diff does not count links, nor does Merged
			}
			if got := changes(t, Merged{Upper: root, Lowers: []string{lower}}); !slices.Equal(got, want) {
				t.Errorf("Merged: changes %q, want %q", got, want)
			}
		})
	}
}

// rewriteKeepTime writes b over p in place and puts p's mtime back.
func rewriteKeepTime(p string, b []byte) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return err
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

func readTar(b []byte) ([]entry, error) {
	tr := tar.NewReader(bytes.NewReader(b))
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		out = append(out, entry{h, string(body)})
	}
}
