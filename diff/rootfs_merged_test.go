package diff

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRootfsMergedListsLikeDocker: snap diff of a rootfs lists what docker
// diff lists for a vfs container (ChangesDirs), where a layer differs: a
// directory emptied of its lower entries is a D for each (the layer has
// one opaque directory), and a new hardlink does not change its target (the
// layer carries the target again so the link can point at it).
func TestRootfsMergedListsLikeDocker(t *testing.T) {
	requireRoot(t)
	base := baseTree(t)
	tests := []struct {
		name          string
		change        func(root string)
		layer, listed []string
	}{
		{"emptied dir", func(r string) {
			os.RemoveAll(filepath.Join(r, "doc"))
			write(t, filepath.Join(r, "doc/fresh"), "f")
		}, []string{"C /doc (opaque)", "A /doc/fresh"}, []string{"C /doc", "D /doc/a", "A /doc/fresh", "D /doc/sub"}},
		{"hardlink", func(r string) {
			if err := os.Link(filepath.Join(r, "etc/passwd"), filepath.Join(r, "etc/p2")); err != nil {
				t.Fatal(err)
			}
		}, []string{"C /etc", "A /etc/p2", "C /etc/passwd"}, []string{"C /etc", "A /etc/p2"}},
		{"deleted dir", func(r string) { os.RemoveAll(filepath.Join(r, "doc")) }, []string{"D /doc"}, []string{"D /doc"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTar(t, base)
			tc.change(root)
			r := Rootfs{Root: root, Lowers: []string{base}}
			if got := changes(t, r); !slices.Equal(got, tc.layer) {
				t.Errorf("layer\n got %q\nwant %q", got, tc.layer)
			}
			if got := changes(t, r.Merged()); !slices.Equal(got, tc.listed) {
				t.Errorf("listed\n got %q\nwant %q", got, tc.listed)
			}
		})
	}
}
