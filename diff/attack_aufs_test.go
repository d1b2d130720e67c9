package diff

import (
	"context"
	"path"
	"path/filepath"
	"testing"
)

// TestAUFSWhiteoutNamesNoParent: in an AUFS branch, .wh.NAME deletes NAME
// in the same directory. A branch file named ".wh.." or ".wh..." names "."
// or "..": joined with path.Join, the whiteout deletes the directory that
// holds it, or that directory's parent (here the layer gets a/.wh.b and
// .wh.a: /a and everything in it vanish from the image). A whiteout must
// name an entry of its own directory; anything else is refused (or at
// least never deletes elsewhere). Outside items 1 and 5: input validation
// of the AUFS walkers (the layer one and snap diff's).
func TestAUFSWhiteoutNamesNoParent(t *testing.T) {
	for _, name := range []string{".wh..", ".wh..."} {
		for _, src := range []func(u string) Walker{
			func(u string) Walker { return Overlay{Upper: u, Format: FormatAUFS} },
			func(u string) Walker { return Merged{Upper: u, Lowers: []string{t.TempDir()}, Format: FormatAUFS} },
		} {
			u := t.TempDir()
			write(t, filepath.Join(u, "a/b", name), "")
			write(t, filepath.Join(u, "a/b/keep"), "k")
			s := src(u)
			err := s.Walk(context.Background(), func(c Change) error {
				if c.Kind == Deleted && path.Dir(c.Path) != "a/b" {
					t.Errorf("%T: branch file a/b/%s deletes /%s", s, name, c.Path)
				}
				return nil
			})
			if err != nil {
				t.Logf("%T: %s refused: %v", s, name, err)
			}
		}
	}
}
