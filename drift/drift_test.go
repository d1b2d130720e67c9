package drift

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
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/compression"
	"snap/internal/archivetest"
	"snap/store"
)

var (
	t0 = time.Unix(1700000000, 0)
	t1 = time.Unix(1700000100, 0)
)

// ent is one tar entry of a test layer.
type ent struct {
	h    tar.Header
	body string
}

func file(name, body string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: t0}, body: body}
}
func dir(name string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: t0}}
}
func symlink(name, target string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: t0}}
}
func hardlink(name, target string) ent {
	return ent{h: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: t0}}
}
func whiteout(name string) ent { return file(name, "") }

// with changes an entry's header.
func with(e ent, fn func(h *tar.Header)) ent { fn(&e.h); return e }

func layerTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.h
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if len(h.PAXRecords) > 0 {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// putLayer stores the tar as a blob compressed as comp, unchecked (hostile
// layers must reach the store), and returns its descriptor and diff_id.
func putLayer(t testing.TB, st *store.Store, tb []byte, comp compression.Compression) (ocispec.Descriptor, digest.Digest) {
	t.Helper()
	blob := tb
	switch comp {
	case compression.Gzip:
		blob = archivetest.Gzip(t, tb)
	case compression.Zstd:
		blob = archivetest.Zstd(t, tb)
	}
	d, err := st.PutBlob(blob)
	if err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: comp.MediaType(), Digest: d, Size: int64(len(blob))}, digest.FromBytes(tb)
}

// putImage stores an image of these layer tars under tag.
func putImage(t testing.TB, st *store.Store, tag string, comp compression.Compression, layers ...[]byte) *store.Image {
	t.Helper()
	var descs []ocispec.Descriptor
	var ids []digest.Digest
	for _, l := range layers {
		d, id := putLayer(t, st, l, comp)
		descs, ids = append(descs, d), append(ids, id)
	}
	img, err := st.Put(archivetest.Config(ids...), descs, []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func lines(chs []Change) []string {
	var out []string
	for _, c := range chs {
		out = append(out, c.String())
	}
	return out
}

func TestCompare(t *testing.T) {
	base := []ent{
		dir("etc"), file("etc/motd", "hello"), file("etc/gone", "x"),
		dir("d"), file("d/a", "a"), file("d/b", "b"),
		file("x", "aaaa"), symlink("l", "x"),
		dir("tree"), dir("tree/sub"), file("tree/sub/f", "f"),
	}
	cases := []struct {
		name string
		base []ent   // the layer both images share ("" none)
		a, b [][]ent // each image's own layers on top
		comp compression.Compression
		want []string
	}{
		{
			name: "add change delete",
			base: base,
			b: [][]ent{{
				with(dir("etc"), func(h *tar.Header) { h.ModTime = t1 }),
				with(file("etc/motd", "hello world"), func(h *tar.Header) { h.ModTime = t1 }),
				whiteout("etc/.wh.gone"),
				file("opt/app/run", "#!/bin/sh\nrun"),
			}},
			want: []string{"C /etc", "D /etc/gone  (1 B)", "C /etc/motd  (11 B, was 5 B)", "A /opt", "A /opt/app", "A /opt/app/run  (13 B)"},
		},
		{
			name: "same size same second edit",
			a:    [][]ent{{file("y", "aaaa")}},
			b:    [][]ent{{file("y", "bbbb")}},
			want: []string{"C /y  (4 B)"},
		},
		{
			name: "same content in other layers",
			a:    [][]ent{{file("y", "aaaa")}},
			b:    [][]ent{{file("y", "aaaa"), file("z", "")}},
			want: []string{"A /z  (0 B)"},
		},
		{
			name: "same size same second edit of a base file",
			base: base,
			b:    [][]ent{{file("x", "bbbb")}},
			want: []string{"C /x  (4 B)"},
		},
		{
			name: "base file rewritten unchanged",
			base: base,
			b:    [][]ent{{file("x", "aaaa")}},
		},
		{
			name: "mode",
			base: base,
			b:    [][]ent{{with(file("x", "aaaa"), func(h *tar.Header) { h.Mode = 0o755 })}},
			want: []string{"C /x  (4 B)"},
		},
		{
			name: "setuid",
			base: base,
			b:    [][]ent{{with(file("x", "aaaa"), func(h *tar.Header) { h.Mode = 0o4644 })}},
			want: []string{"C /x  (4 B)"},
		},
		{
			name: "owner",
			base: base,
			b:    [][]ent{{with(file("x", "aaaa"), func(h *tar.Header) { h.Uid, h.Gid = 1000, 1000 })}},
			want: []string{"C /x  (4 B)"},
		},
		{
			name: "mtime",
			base: base,
			b:    [][]ent{{with(file("x", "aaaa"), func(h *tar.Header) { h.ModTime = t1 })}},
			want: []string{"C /x  (4 B)"},
		},
		{
			name: "xattr",
			a:    [][]ent{{with(file("y", "aaaa"), func(h *tar.Header) { h.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "1"} })}},
			b:    [][]ent{{with(file("y", "aaaa"), func(h *tar.Header) { h.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "2"} })}},
			want: []string{"C /y  (4 B)"},
		},
		{
			name: "xattr added",
			base: base,
			b: [][]ent{{with(file("x", "aaaa"), func(h *tar.Header) {
				h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"}
			})}},
			want: []string{"C /x  (4 B)"},
		},
		{
			name: "symlink target",
			base: base,
			b:    [][]ent{{symlink("l", "etc/motd")}},
			want: []string{"C /l"},
		},
		{
			name: "device numbers",
			a:    [][]ent{{ent{h: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t0}}}},
			b:    [][]ent{{ent{h: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 5, ModTime: t0}}}},
			want: []string{"C /null"},
		},
		{
			name: "file replaced by symlink",
			base: base,
			b:    [][]ent{{symlink("x", "l")}},
			want: []string{"C /x"},
		},
		{
			name: "dir replaced by file",
			base: base,
			b:    [][]ent{{file("d", "now a file")}},
			want: []string{"C /d  (10 B)"},
		},
		{
			name: "file replaced by dir",
			base: base,
			b:    [][]ent{{dir("x"), file("x/in", "in")}},
			want: []string{"C /x", "A /x/in  (2 B)"},
		},
		{
			name: "opaque dir",
			base: base,
			b:    [][]ent{{dir("d"), whiteout("d/.wh..wh..opq"), file("d/c", "c")}},
			want: []string{"D /d/a  (1 B)", "D /d/b  (1 B)", "A /d/c  (1 B)"},
		},
		{
			name: "opaque marker before the layer's own entries and after",
			base: base,
			b:    [][]ent{{dir("d"), file("d/c", "c"), whiteout("d/.wh..wh..opq"), file("d/e", "e")}},
			want: []string{"D /d/a  (1 B)", "D /d/b  (1 B)", "A /d/c  (1 B)", "A /d/e  (1 B)"},
		},
		{
			name: "whiteout of a base file",
			base: base,
			b:    [][]ent{{whiteout(".wh.x")}},
			want: []string{"D /x  (4 B)"},
		},
		{
			name: "whiteout of a base dir is one D",
			base: base,
			b:    [][]ent{{whiteout(".wh.tree")}},
			want: []string{"D /tree"},
		},
		{
			name: "deleted then added back the same",
			base: base,
			b:    [][]ent{{whiteout(".wh.x")}, {file("x", "aaaa")}},
		},
		{
			name: "hardlink added",
			base: base,
			b:    [][]ent{{hardlink("x2", "x")}},
			want: []string{"A /x2  (4 B)"},
		},
		{
			name: "hardlink or copy: the same file",
			a:    [][]ent{{file("p", "1234"), hardlink("q", "p")}},
			b:    [][]ent{{file("p", "1234"), file("q", "1234")}},
		},
		{
			name: "hardlink to other content",
			a:    [][]ent{{file("p", "1234"), hardlink("q", "p")}},
			b:    [][]ent{{file("p", "1234"), file("r", "5678"), hardlink("q", "r")}},
			want: []string{"C /q  (4 B)", "A /r  (4 B)"},
		},
		{
			name: "hardlink keeps the data it was made with",
			a:    [][]ent{{file("p", "1234"), hardlink("q", "p")}},
			b:    [][]ent{{file("p", "1234"), hardlink("q", "p")}, {file("p", "5678")}},
			want: []string{"C /p  (4 B)"},
		},
		{
			name: "gzip and zstd",
			a:    [][]ent{{file("y", "aaaa"), file("same", "s")}},
			b:    [][]ent{{file("y", "bbbbb"), file("same", "s")}},
			comp: compression.Zstd,
			want: []string{"C /y  (5 B, was 4 B)"},
		},
		{
			name: "identical",
			base: base,
		},
		{
			name: "nothing shared, nothing differs",
			a:    [][]ent{base},
			b:    [][]ent{{dir("etc"), file("etc/motd", "hello"), file("etc/gone", "x")}, {dir("d"), file("d/a", "a"), file("d/b", "b"), file("x", "aaaa"), symlink("l", "x"), dir("tree"), dir("tree/sub"), file("tree/sub/f", "f")}},
		},
		{
			name: "control characters quoted",
			b:    [][]ent{{file("evil\nD x", "x")}},
			want: []string{`A "/evil\nD x"  (1 B)`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			var shared [][]byte
			if tc.base != nil {
				shared = append(shared, layerTar(t, tc.base...))
			}
			build := func(tag string, comp compression.Compression, own [][]ent) *store.Image {
				ls := slices.Clone(shared)
				for _, l := range own {
					ls = append(ls, layerTar(t, l...))
				}
				return putImage(t, st, tag, comp, ls...)
			}
			a := build("a:1", compression.Gzip, tc.a)
			comp := tc.comp
			if comp == "" {
				comp = compression.Gzip
			}
			b := build("b:1", comp, tc.b)
			got, err := Compare(t.Context(), st, a, b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lines(got), tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(lines(got), "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// Files the two images got from a layer both share at the same index are
// the same files: their data is never read, only the headers. The control
// (the same base built as another layer, no prefix shared) shows the hook
// sees a read when one happens.
func TestSharedPrefixNotRead(t *testing.T) {
	st := openStore(t)
	big := strings.Repeat("snap", 1<<18)
	baseTar := layerTar(t, dir("usr"), file("usr/big", big), file("usr/other", "o"))
	otherBaseTar := layerTar(t, dir("usr"), file("usr/big", big), file("usr/other", "o"), file("usr/extra", ""))
	a := putImage(t, st, "a:1", compression.Gzip, baseTar, layerTar(t, file("a", "a")))
	b := putImage(t, st, "b:1", compression.Gzip, baseTar, layerTar(t, file("b", "bb"), file("usr/other", "p")))
	c := putImage(t, st, "c:1", compression.Gzip, otherBaseTar, layerTar(t, file("b", "bb")))
	for _, tc := range []struct {
		name       string
		x, y       *store.Image
		want       []string
		wantHashed int64 // bytes hashed from a's base layer: usr/other alone when it is shared
	}{
		{"shared", a, b, []string{"D /a  (1 B)", "A /b  (2 B)", "C /usr/other  (1 B)"}, 1},
		{"not shared", a, c, []string{"D /a  (1 B)", "A /b  (2 B)", "A /usr/extra  (0 B)"}, int64(len(big)) + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hashed int64
			base := tc.x.Manifest.Layers[0].Digest
			cmp := &comparer{st: st, hashed: func(l digest.Digest, n int64) {
				if l == base {
					hashed += n
				}
			}}
			got, err := cmp.compare(t.Context(), tc.x, tc.y)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lines(got), tc.want) {
				t.Errorf("got %q, want %q", lines(got), tc.want)
			}
			if hashed != tc.wantHashed {
				t.Errorf("hashed %d bytes of the base layer, want %d", hashed, tc.wantHashed)
			}
		})
	}
}

// A layer whose entries would reach outside the root fails the whole
// comparison with one error naming the image, the layer and the entry.
func TestHostileLayers(t *testing.T) {
	pax := func(k, v string) []byte {
		return archivetest.Tar(t, nil, archivetest.Entry{Typ: tar.TypeXHeader, Body: archivetest.PAXRecord(k, v)}, archivetest.Entry{Name: "n", Body: []byte("x")})
	}
	cases := []struct {
		name   string
		layer  []byte
		entry  string // "" when the tar reader itself refuses it
		unsafe bool
	}{
		{"dotdot", layerTar(t, file("a/../../etc/passwd", "x")), "a/../../etc/passwd", true},
		{"absolute", layerTar(t, file("/etc/passwd", "x")), "/etc/passwd", true},
		{"whiteout of dotdot", layerTar(t, dir("a"), whiteout("a/.wh...")), "a/.wh...", true},
		{"whiteout of dot", layerTar(t, whiteout("a/.wh..")), "a/.wh..", true},
		{"hardlink out", layerTar(t, hardlink("h", "../../etc/shadow")), "h", true},
		{"hardlink absolute", layerTar(t, hardlink("h", "/etc/shadow")), "h", true},
		{"hardlink to nothing", layerTar(t, hardlink("h", "nothing")), "h", false},
		{"NUL in a name", pax("path", "a\x00/../../x"), "", false},
		{"NUL in a link", pax("linkpath", "a\x00b"), "", false},
		{"under a file", layerTar(t, file("f", "x"), file("f/g", "y")), "f/g", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			good := putImage(t, st, "good:1", compression.Gzip, layerTar(t, file("x", "x")))
			bad := putImage(t, st, "bad:1", compression.Zstd, layerTar(t, file("x", "x")), tc.layer)
			for _, order := range [][2]*store.Image{{good, bad}, {bad, good}} {
				got, err := Compare(t.Context(), st, order[0], order[1])
				if err == nil {
					t.Fatalf("no error; changes %q", lines(got))
				}
				var le *LayerError
				if !errors.As(err, &le) {
					t.Fatalf("%v: not a LayerError", err)
				}
				if le.Image != "bad:1" || le.Layer != bad.Manifest.Layers[1].Digest || le.Entry != tc.entry {
					t.Errorf("%v: names image %q layer %s entry %q, want bad:1 %s %q", err, le.Image, le.Layer, le.Entry, bad.Manifest.Layers[1].Digest, tc.entry)
				}
				if tc.entry == "" && !strings.Contains(err.Error(), "entry #1") {
					t.Errorf("%v: does not name the entry", err)
				}
				if errors.Is(err, ErrUnsafeEntry) != tc.unsafe {
					t.Errorf("%v: errors.Is ErrUnsafeEntry = %v, want %v", err, !tc.unsafe, tc.unsafe)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("%q: more than one line", err)
				}
			}
		})
	}
}

// A layer blob whose content is not what its digest, or the image's
// diff_id, says is an error, not a drift read from it.
func TestCorruptLayer(t *testing.T) {
	st := openStore(t)
	a := putImage(t, st, "a:1", compression.None, layerTar(t, file("x", "x")))
	b := putImage(t, st, "b:1", compression.None, layerTar(t, file("x", "y")))
	// b's config claims another diff_id for its layer: a blob of that
	// content would be judged shared with nothing it is not.
	lie, err := st.Put(archivetest.Config(a.Config.RootFS.DiffIDs[0]), b.Manifest.Layers, []string{"lie:1"})
	if err != nil {
		t.Fatal(err)
	}
	empty := putImage(t, st, "empty:1", compression.None)
	_, err = Compare(t.Context(), st, empty, lie)
	if !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("diff_id mismatch: %v, want ErrCorrupt", err)
	}

	// A blob whose bytes changed on disk (still a tar, so only the
	// digest check can tell).
	p, err := st.BlobPath(b.Manifest.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, layerTar(t, file("x", "z")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Compare(t.Context(), st, a, b)
	var le *LayerError
	if !errors.Is(err, store.ErrCorrupt) || !errors.As(err, &le) || le.Image != "b:1" || le.Layer != b.Manifest.Layers[0].Digest {
		t.Errorf("corrupt blob: %v, want ErrCorrupt naming b:1 and its layer", err)
	}
}

// A cancelled comparison stops with the context's error.
func TestCompareCancelled(t *testing.T) {
	st := openStore(t)
	a := putImage(t, st, "a:1", compression.Gzip, layerTar(t, file("x", "x")))
	b := putImage(t, st, "b:1", compression.Gzip, layerTar(t, file("x", "y")))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Compare(ctx, st, a, b); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}
