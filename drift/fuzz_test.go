package drift

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzApplyLayer applies any tar, twice over (as two layers of one image),
// and checks the tree it leaves: no panic, every name one plain component
// (no "", ".", "..", "/" or NUL: nothing reaches outside the root, whatever
// the entries said), every file's data in an entry of the layers, and a
// tree compared with itself shows no change and needs no read.
func FuzzApplyLayer(f *testing.F) {
	for _, ents := range [][]ent{
		{dir("etc"), file("etc/motd", "hi"), whiteout("etc/.wh.motd")},
		{dir("d"), whiteout("d/.wh..wh..opq"), file("d/x", "x"), hardlink("d/y", "d/x")},
		{file("../escape", "x")},
		{file("/abs", "x")},
		{whiteout(".wh.."), whiteout("a/.wh...")},
		{hardlink("h", "../../etc/shadow")},
		{file("f", "x"), file("f/g", "y")},
		{dir("a"), symlink("a/l", "/etc"), file("a/l/x", "z")},
		{file("a/b/c", "deep"), file("a", "replaces the dir")},
	} {
		f.Add(layerTar(f, ents...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		root := newRoot()
		ords := map[int]int{} // layer: entries read
		for li := range 2 {
			tr := tar.NewReader(bytes.NewReader(b))
			for ord := 0; ; ord++ {
				h, err := tr.Next()
				if err != nil {
					break
				}
				ords[li] = ord + 1
				if apply(root, li, ord, h) != nil {
					break
				}
				if _, err := io.Copy(io.Discard, tr); err != nil {
					break
				}
			}
		}
		var check func(p string, n *node)
		check = func(p string, n *node) {
			for name, k := range n.kids {
				if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
					t.Fatalf("%s: a child named %q", p, name)
				}
				if k.e.typ == tar.TypeDir != (k.kids != nil) {
					t.Fatalf("%s/%s: type %q with kids %v", p, name, k.e.typ, k.kids != nil)
				}
				if k.e.typ == tar.TypeReg && k.e.size > 0 && k.e.content.ord >= ords[k.e.content.layer] {
					t.Fatalf("%s/%s: data in entry %d of layer %d, which has %d", p, name, k.e.content.ord, k.e.content.layer, ords[k.e.content.layer])
				}
				check(p+"/"+name, k)
			}
		}
		check("", root)
		var out []Change
		var cands []candidate
		walk("", root, root, &out, &cands)
		if len(out) > 0 || len(cands) > 0 {
			t.Fatalf("a tree against itself: %q and %d to hash", lines(out), len(cands))
		}
	})
}
