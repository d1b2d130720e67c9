package diff

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"snap/compression"
)

func TestSourceDateEpochIsReproducible(t *testing.T) {
	requireRoot(t)
	epoch := time.Unix(1700000000, 0)
	for _, comp := range []compression.Compression{compression.None, compression.Gzip, compression.Zstd} {
		t.Run(string(comp), func(t *testing.T) {
			u := t.TempDir()
			write(t, filepath.Join(u, "etc/big"), strings.Repeat("snap layer ", 300000)) // several gzip blocks
			write(t, filepath.Join(u, "etc/small"), "s")
			if err := unix.Mknod(filepath.Join(u, "etc/gone"), unix.S_IFCHR, 0); err != nil {
				t.Fatal(err)
			}
			var digests []digest.Digest
			for i := range 3 {
				// Touch everything between runs: the clamp must hide it.
				now := time.Now().Add(time.Duration(i) * time.Hour)
				filepath.Walk(u, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, now, now) })
				var buf bytes.Buffer
				res, err := WriteLayer(context.Background(), &buf, Overlay{Upper: u}, Options{Compression: comp, SourceDateEpoch: &epoch})
				if err != nil {
					t.Fatal(err)
				}
				tarball := decompress(t, comp, buf.Bytes())
				if diffID := digest.FromBytes(tarball); diffID != res.DiffID || int64(len(tarball)) != res.UncompressedSize {
					t.Fatalf("reported diffID %s size %d, tar is %s size %d", res.DiffID, res.UncompressedSize, diffID, len(tarball))
				}
				digests = append(digests, digest.FromBytes(buf.Bytes()))
				tr := tar.NewReader(bytes.NewReader(decompress(t, comp, buf.Bytes())))
				for {
					h, err := tr.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					if h.ModTime.After(epoch) {
						t.Errorf("%s: mtime %v after SOURCE_DATE_EPOCH", h.Name, h.ModTime)
					}
				}
			}
			if digests[0] != digests[1] || digests[1] != digests[2] {
				t.Fatalf("same tree, different digests: %v", digests)
			}
		})
	}
}

func decompress(t *testing.T, c compression.Compression, b []byte) []byte {
	t.Helper()
	var r io.Reader = bytes.NewReader(b)
	switch c {
	case compression.Gzip:
		gz, err := pgzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	case compression.Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHeaders(t *testing.T) {
	requireRoot(t)
	u := t.TempDir()
	long := strings.Repeat("n", 150) + "/" + strings.Repeat("m", 120) + "-é"
	write(t, filepath.Join(u, long), "deep")
	write(t, filepath.Join(u, "a/first"), "linked")
	if err := os.Link(filepath.Join(u, "a/first"), filepath.Join(u, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(u, "a/first"), 4000000, 123); err != nil { // needs PAX
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(u, "a"), "user.note", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(u, "a"), "trusted.overlay.origin", []byte("dropped"), 0); err != nil {
		t.Fatal(err)
	}
	run(t, "setcap", "cap_net_raw+ep", filepath.Join(u, "b"))
	if err := unix.Mknod(filepath.Join(u, "a/tty"), unix.S_IFCHR|0o620, int(unix.Mkdev(5, 0))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(u, "a/tty"), 0o620); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(u, "a/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	es, _ := layer(t, Overlay{Upper: u}, Options{})
	byName := map[string]*tar.Header{}
	for _, e := range es {
		byName[e.hdr.Name] = e.hdr
		if e.hdr.Uname != "" || e.hdr.Gname != "" {
			t.Errorf("%s: uname/gname %q/%q, want numeric ids only", e.hdr.Name, e.hdr.Uname, e.hdr.Gname)
		}
		if e.hdr.ModTime.Nanosecond() != 0 || !e.hdr.AccessTime.IsZero() || !e.hdr.ChangeTime.IsZero() {
			t.Errorf("%s: times %v %v %v, want whole-second mtime only", e.hdr.Name, e.hdr.ModTime, e.hdr.AccessTime, e.hdr.ChangeTime)
		}
	}
	checks := []struct {
		name string
		ok   func(h *tar.Header) bool
	}{
		{long, func(h *tar.Header) bool { return h.Size == 4 }},
		{"a/", func(h *tar.Header) bool {
			return h.PAXRecords["SCHILY.xattr.user.note"] == "kept" && h.PAXRecords["SCHILY.xattr.trusted.overlay.origin"] == ""
		}},
		{"a/first", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Uid == 4000000 && h.Gid == 123 }},
		{"b", func(h *tar.Header) bool {
			return h.Typeflag == tar.TypeLink && h.Linkname == "a/first" && h.PAXRecords["SCHILY.xattr.security.capability"] != ""
		}},
		{"a/tty", func(h *tar.Header) bool { return h.Typeflag == tar.TypeChar && h.Devmajor == 5 && h.Mode == 0o620 }},
		{"a/fifo", func(h *tar.Header) bool { return h.Typeflag == tar.TypeFifo && h.Mode == 0o600 }},
	}
	for _, c := range checks {
		h := byName[c.name]
		if h == nil || !c.ok(h) {
			t.Errorf("%s: header %+v", c.name, h)
		}
	}
}

// sparseFile writes a file with data at the given offsets and holes elsewhere.
func sparseFile(t testing.TB, p string, size int64, chunks map[int64]string) []byte {
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	for off, s := range chunks {
		if off+int64(len(s)) > size {
			continue
		}
		if _, err := f.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], s)
	}
	return want
}

func TestSparseReadByGoAndGNUTar(t *testing.T) {
	requireRoot(t)
	u := t.TempDir()
	const size = 64 << 20
	want := sparseFile(t, filepath.Join(u, "disk.img"), size, map[int64]string{0: "boot", 32 << 20: "middle", size - 3: "end"})
	holes := sparseFile(t, filepath.Join(u, "hole-at-end"), 10<<20, map[int64]string{4096: "data"})
	write(t, filepath.Join(u, "plain"), "not sparse")
	var buf bytes.Buffer
	if _, err := WriteLayer(context.Background(), &buf, Overlay{Upper: u}, Options{Sparse: true}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 1<<20 {
		t.Fatalf("sparse layer is %d bytes: holes were stored", buf.Len())
	}
	es, _ := layer(t, Overlay{Upper: u}, Options{Sparse: true})
	got := map[string]string{}
	for _, e := range es {
		got[e.hdr.Name] = e.body
	}
	if sha256.Sum256([]byte(got["disk.img"])) != sha256.Sum256(want) || got["hole-at-end"] != string(holes) || got["plain"] != "not sparse" {
		t.Fatalf("Go's archive/tar read back different content (%d, %d bytes)", len(got["disk.img"]), len(got["hole-at-end"]))
	}
	out := t.TempDir()
	cmd := exec.Command("tar", "-C", out, "-xf", "-")
	cmd.Stdin = &buf
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GNU tar: %v: %s", err, b)
	}
	for name, w := range map[string][]byte{"disk.img": want, "hole-at-end": holes} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(b, w) {
			t.Fatalf("GNU tar extracted %s differently (%v)", name, err)
		}
	}
}

// FuzzSparseRoundTrip writes files with holes wherever the fuzzer puts data
// and checks that archive/tar reads back every byte.
func FuzzSparseRoundTrip(f *testing.F) {
	f.Add(uint32(1<<20), uint32(0), "a", uint32(8192), "b")
	f.Add(uint32(4096*3), uint32(4095), "xyz", uint32(4096*3-1), "z")
	f.Fuzz(func(t *testing.T, size, off1 uint32, s1 string, off2 uint32, s2 string) {
		size %= 2 << 20
		if size == 0 {
			return
		}
		u := t.TempDir()
		want := sparseFile(t, filepath.Join(u, "f"), int64(size), map[int64]string{int64(off1 % size): s1, int64(off2 % size): s2})
		es, _ := layer(t, Overlay{Upper: u}, Options{Sparse: true})
		if len(es) != 1 || es[0].hdr.Name != "f" || es[0].body != string(want) {
			t.Fatalf("round trip lost data (%d entries)", len(es))
		}
	})
}

// FuzzNamesRoundTrip creates files under arbitrary names (long, non-ASCII,
// not UTF-8, whiteout-like) and checks each comes back under its own name, or
// is refused with an error naming it when it would read as a whiteout.
func FuzzNamesRoundTrip(f *testing.F) {
	for _, s := range []string{"a", strings.Repeat("x", 255), "é日本", ".wh.x", ".wh..wh..opq", "\xff\xfe", "a b\tc", "..x"} {
		f.Add(s, "dir")
	}
	f.Fuzz(func(t *testing.T, name, dir string) {
		if !validName(name) || !validName(dir) {
			return
		}
		u := t.TempDir()
		p := filepath.Join(u, dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return
		}
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			return
		}
		var buf bytes.Buffer
		_, err := WriteLayer(context.Background(), &buf, Overlay{Upper: u}, Options{})
		if strings.HasPrefix(name, ".wh.") || strings.HasPrefix(dir, ".wh.") {
			if err == nil || !strings.Contains(err.Error(), ".wh.") {
				t.Fatalf("whiteout-like name %q: err = %v", name, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(&buf)
		var got []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, h.Name)
		}
		want := []string{dir + "/", dir + "/" + name}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("names %q, want %q", got, want)
		}
	})
}

func validName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 255 && !strings.ContainsAny(s, "/\x00")
}
