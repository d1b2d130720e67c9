package diff

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	archive "github.com/moby/go-archive"
)

// TestAUFSDiffListsParentsAsDocker is issue 8 item 14: `snap diff
// --upper-format aufs` lists a directory as changed only when its own
// metadata changed or an entry directly in it was added or deleted (moby's
// TestChangesWithChangesGH13590), not every ancestor of a change. go-archive's
// archive.Changes, which docker's aufs driver runs, is the reference on the
// same dirs; the cases where snap differs on purpose say why.
func TestAUFSDiffListsParentsAsDocker(t *testing.T) {
	requireRoot(t)
	// sameTimes gives p the mtime of the lower's entry, so that a directory
	// the branch holds only because of what lies beneath it looks unchanged.
	sameTimes := func(t *testing.T, lower, upper, rel string) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(lower, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(upper, rel), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	dir3 := "dir1/dir2/dir3"
	tests := []struct {
		name   string
		branch func(t *testing.T, lower, upper string)
		want   []string
		// dockerDiffers names why go-archive lists something else here.
		dockerDiffers string
	}{
		{name: "GH13590: a file added", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			os.Remove(filepath.Join(u, dir3, "file.txt"))
			write(t, filepath.Join(u, dir3, "file1.txt"), "bye")
		}, want: []string{"C /dir1/dir2/dir3", "A /dir1/dir2/dir3/file1.txt"}},
		{name: "GH13590: a file changed", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			write(t, filepath.Join(u, dir3, "file.txt"), "bye")
		}, want: []string{"C /dir1/dir2/dir3/file.txt"}},
		{name: "added beneath directories whose metadata did not change", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			os.Remove(filepath.Join(u, dir3, "file.txt")) // not copied up
			write(t, filepath.Join(u, dir3, "new"), "n")
			sameTimes(t, l, u, dir3)
		}, want: []string{"C /dir1/dir2/dir3", "A /dir1/dir2/dir3/new"}},
		{name: "deleted beneath directories whose metadata did not change", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			os.Remove(filepath.Join(u, dir3, "file.txt"))
			write(t, filepath.Join(u, dir3, ".wh.file.txt"), "")
			sameTimes(t, l, u, dir3)
		}, want: []string{"C /dir1/dir2/dir3", "D /dir1/dir2/dir3/file.txt"}},
		{name: "copied up, nothing changed", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			os.Remove(filepath.Join(u, dir3, "file.txt"))
			sameTimes(t, l, u, dir3)
		}, want: nil},
		{name: "a directory's own mode", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			os.RemoveAll(filepath.Join(u, "dir1/dir2"))
			sameTimes(t, l, u, "dir1")
			os.Chmod(filepath.Join(u, "dir1"), 0o700)
		}, want: []string{"C /dir1"}},
		{name: "a directory's own mtime", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			os.Remove(filepath.Join(u, dir3, "file.txt"))
			sameTimes(t, l, u, dir3)
			os.Chtimes(filepath.Join(u, "dir1/dir2"), time.Unix(1_000_000_000, 0), time.Unix(1_000_000_000, 0))
		}, want: []string{"C /dir1/dir2"}},
		{name: "a new tree", branch: func(t *testing.T, l, u string) {
			write(t, filepath.Join(u, "new/a/b"), "b")
		}, want: []string{"A /new", "A /new/a", "A /new/a/b"}},
		{name: "a directory replaced by a file", branch: func(t *testing.T, l, u string) {
			write(t, filepath.Join(u, "keep"), "now a file")
		}, want: []string{"C /keep"}},
		{name: "a directory deleted at the root", branch: func(t *testing.T, l, u string) {
			write(t, filepath.Join(u, ".wh.keep"), "")
		}, want: []string{"D /keep"}},
		{name: "a directory's own owner", branch: func(t *testing.T, l, u string) {
			run(t, "cp", "-a", filepath.Join(l, "dir1"), u)
			os.RemoveAll(filepath.Join(u, "dir1/dir2"))
			sameTimes(t, l, u, "dir1")
			os.Lchown(filepath.Join(u, "dir1"), 1234, 1234)
		}, want: []string{"C /dir1"}, dockerDiffers: "docker's test is size, mode and mtime: a chown alone goes unlisted"},
		{name: "AUFS bookkeeping", branch: func(t *testing.T, l, u string) {
			write(t, filepath.Join(u, ".wh..wh.plnk/123.456"), "")
			write(t, filepath.Join(u, ".wh..wh.aufs"), "")
		}, want: nil, dockerDiffers: "go-archive skips /.wh..wh.plnk itself but walks into it and lists its contents as added"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lower := t.TempDir()
			if err := os.MkdirAll(filepath.Join(lower, dir3), 0o740); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(lower, dir3, "file.txt"), "hello")
			write(t, filepath.Join(lower, "keep/x"), "x")
			upper := t.TempDir()
			tc.branch(t, lower, upper)

			got := changes(t, Merged{Upper: upper, Lowers: []string{lower}, Format: FormatAUFS})
			if !slices.Equal(got, tc.want) {
				t.Errorf("snap: %q\nwant: %q", got, tc.want)
			}
			ref, err := archive.Changes([]string{lower}, upper)
			if err != nil {
				t.Fatal(err)
			}
			var docker []string
			for _, c := range ref {
				docker = append(docker, c.String())
			}
			switch same := slices.Equal(docker, tc.want); {
			case tc.dockerDiffers == "" && !same:
				t.Errorf("go-archive: %q\n      want: %q", docker, tc.want)
			case tc.dockerDiffers != "" && same:
				t.Errorf("go-archive now agrees (%q); drop the note %q", docker, tc.dockerDiffers)
			}
		})
	}
}
