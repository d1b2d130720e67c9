package diff

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Changes a running container makes while its layer is written (commit
// -p=false, or a rootfs in use) that are no attack and should not fail the
// commit, or not that way. The mutateAt source is in attack_toctou_test.go.

// TestGrowingFileIsCutAtTheListedSize: with the container running (commit
// -p=false), a process appends to a log file while the layer is written.
// The re-check after open compares sizes as well as the inode, so the
// commit fails ("changed during the commit") for a file that is the same
// file, only longer; in rootfs mode the window is the whole scan, not one
// file's copy. The inode check is what keeps the host out; the size check
// adds nothing to it (the writer reads exactly the listed size and fails
// on a short read). Docker fails here too ("archive/tar: write too long"),
// but only when the file grows during its own copy. Policy: the file is
// cut at the size its header was written with.
func TestGrowingFileIsCutAtTheListedSize(t *testing.T) {
	requireRoot(t)
	eachMode(t, func(t *testing.T, root string, src Walker) {
		const listed = 3 * prefetchMax
		write(t, filepath.Join(root, "grows"), strings.Repeat("g", listed))
		grow := func() error { // one append between the walk and the writer
			f, err := os.OpenFile(filepath.Join(root, "grows"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("+appended")
			return err
		}
		var buf bytes.Buffer
		if _, err := WriteLayer(context.Background(), &buf, mutateAt{src: src, at: "grows", mutate: grow}, Options{}); err != nil {
			t.Fatal(err)
		}
		es, err := readTar(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(es, func(e entry) bool { return e.hdr.Name == "grows" })
		if i < 0 || es[i].hdr.Size != listed || es[i].body != strings.Repeat("g", listed) {
			t.Fatalf("entries %v: want grows with the %d bytes listed", names(es), listed)
		}
	})
}

// TestDirectoryRemovedDuringTheWalkIsErrChanged: with the container
// running, a directory is removed (rm -rf /tmp/build) after the overlay
// walker opened it and before it lists it. getdents on the dead directory
// says ENOENT, which comes out raw ("read upper: readdirent ...: no such
// file or directory"), where every other removal the walk meets is either
// skipped (an entry gone between readdir and lstat) or ErrChanged (a path
// gone before it is opened): callers cannot tell this race from a broken
// upper. Rootfs mode is checked alongside.
func TestDirectoryRemovedDuringTheWalkIsErrChanged(t *testing.T) {
	requireRoot(t)
	eachMode(t, func(t *testing.T, root string, src Walker) {
		write(t, filepath.Join(root, "x/file"), "f")
		write(t, filepath.Join(root, "y"), "y")
		rm := func() error { return os.RemoveAll(filepath.Join(root, "x")) }
		_, err := WriteLayer(context.Background(), discard{}, mutateAt{src: src, at: "x", mutate: rm}, Options{})
		if err != nil && !errors.Is(err, ErrChanged) {
			t.Fatalf("err = %v, want nil or %v", err, ErrChanged)
		}
	})
}
