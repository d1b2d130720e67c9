package capture

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snap/internal/testenv"
)

// tree makes files under dir from a spec: "name" -> content for a file,
// "name/" for a directory, "name" -> "->target" for a symlink.
func tree(t *testing.T, dir string, spec map[string]string) {
	t.Helper()
	for name, v := range spec {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(v[2:], p)
		default:
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// entry describes what the test wants at a path of the root.
type entry struct {
	typ      fs.FileMode // 0 regular, fs.ModeDir, fs.ModeSymlink
	perm     fs.FileMode // with setuid/setgid/sticky
	uid, gid int
	content  string // a file's content or a symlink's target
	mtime    time.Time
}

func check(t *testing.T, root, name string, want entry) {
	t.Helper()
	p := filepath.Join(root, name)
	fi, err := os.Lstat(p)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != want.typ {
		t.Errorf("%s: type %v, want %v", name, fi.Mode().Type(), want.typ)
	}
	if want.typ != fs.ModeSymlink {
		if got := fi.Mode() &^ fs.ModeType; got != want.perm {
			t.Errorf("%s: mode %v, want %v", name, got, want.perm)
		}
	}
	if int(st.Uid) != want.uid || int(st.Gid) != want.gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, want.uid, want.gid)
	}
	switch want.typ {
	case 0:
		if b, _ := os.ReadFile(p); string(b) != want.content {
			t.Errorf("%s: content %q, want %q", name, b, want.content)
		}
	case fs.ModeSymlink:
		if l, _ := os.Readlink(p); l != want.content {
			t.Errorf("%s: target %q, want %q", name, l, want.content)
		}
	}
	if !want.mtime.IsZero() && !fi.ModTime().Equal(want.mtime) {
		t.Errorf("%s: mtime %v, want %v", name, fi.ModTime(), want.mtime)
	}
}

func TestCopyInto(t *testing.T) {
	testenv.Root(t, "chown of copied files")
	old := time.Unix(1_000_000_000, 0)
	older := time.Unix(900_000_000, 0)
	mode := func(m fs.FileMode) *fs.FileMode { return &m }
	image := map[string]string{
		"etc/passwd":    "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
		"etc/group":     "root:x:0:\nstaff:x:50:\n",
		"srv/":          "",
		"srv/old":       "old",
		"srv/link":      "->old",
		"usr/lib/":      "",
		"lib":           "->usr/lib",
		"opt/etc":       "->/etc",
		"opt/up":        "->../../../../../../etc",
		"opt/loop":      "->loop2",
		"opt/loop2":     "->loop",
		"existing/dir/": "",
	}
	ctx := map[string]string{
		"f":            "file",
		"tree/a":       "a",
		"tree/sub/b":   "b",
		"tree/sub/l":   "->../a",
		"tree/abs":     "->/etc/shadow",
		"tree/lib/x":   "x",
		"tree/srv/new": "new",
	}
	for _, tc := range []struct {
		name  string
		c     Copy
		want  map[string]entry
		err   string
		notIn []string // paths that must not exist in the root
	}{
		{name: "file to a new path, parents made",
			c: Copy{Src: "f", Dst: "/a/b/c"},
			want: map[string]entry{
				"a":     {typ: fs.ModeDir, perm: 0o755},
				"a/b":   {typ: fs.ModeDir, perm: 0o755},
				"a/b/c": {perm: 0o640, content: "file", mtime: old},
			}},
		{name: "file into dst/",
			c:    Copy{Src: "f", Dst: "/new/"},
			want: map[string]entry{"new/f": {perm: 0o640, content: "file", mtime: old}}},
		{name: "file into an existing dir",
			c:    Copy{Src: "f", Dst: "/srv"},
			want: map[string]entry{"srv/f": {perm: 0o640, content: "file"}, "srv/old": {perm: 0o644, content: "old"}}},
		{name: "file replaces a file",
			c:    Copy{Src: "f", Dst: "/srv/old", Owner: "7:8"},
			want: map[string]entry{"srv/old": {perm: 0o640, uid: 7, gid: 8, content: "file"}}},
		{name: "file replaces a symlink, its target untouched",
			c: Copy{Src: "f", Dst: "/srv/link"},
			want: map[string]entry{
				"srv/link": {perm: 0o640, content: "file"},
				"srv/old":  {perm: 0o644, content: "old"},
			}},
		{name: "dir contents into a new dir, mode and owner on all",
			c: Copy{Src: "tree", Dst: "/t", Owner: "1000:1000", Mode: mode(0o750)},
			want: map[string]entry{
				"t":       {typ: fs.ModeDir, perm: 0o750, uid: 1000, gid: 1000, mtime: older},
				"t/a":     {perm: 0o750, uid: 1000, gid: 1000, content: "a", mtime: old},
				"t/sub":   {typ: fs.ModeDir, perm: 0o750, uid: 1000, gid: 1000, mtime: older},
				"t/sub/b": {perm: 0o750, uid: 1000, gid: 1000, content: "b"},
				"t/sub/l": {typ: fs.ModeSymlink, uid: 1000, gid: 1000, content: "../a", mtime: old},
				"t/abs":   {typ: fs.ModeSymlink, uid: 1000, gid: 1000, content: "/etc/shadow"},
			}},
		{name: "dir keeps source modes",
			c: Copy{Src: "tree/sub", Dst: "/s/"},
			want: map[string]entry{
				"s":   {typ: fs.ModeDir, perm: 0o711},
				"s/b": {perm: 0o640, content: "b"},
			}},
		{name: "dir onto / through the image's symlinks (merged /usr)",
			c: Copy{Src: "tree", Dst: "/"},
			want: map[string]entry{
				"lib":          {typ: fs.ModeSymlink, content: "usr/lib"},
				"usr/lib/x":    {perm: 0o640, content: "x"},
				"srv/new":      {perm: 0o640, content: "new"},
				"srv/old":      {perm: 0o644, content: "old"},
				"existing/dir": {typ: fs.ModeDir, perm: 0o755},
			}},
		{name: "owner names from the image",
			c:    Copy{Src: "f", Dst: "/o1", Owner: "app:staff"},
			want: map[string]entry{"o1": {perm: 0o640, uid: 1001, gid: 50, content: "file"}}},
		{name: "owner name alone: gid is the uid",
			c:    Copy{Src: "f", Dst: "/o2", Owner: "app"},
			want: map[string]entry{"o2": {perm: 0o640, uid: 1001, gid: 1001, content: "file"}}},
		{name: "setuid survives the chown",
			c:    Copy{Src: "f", Dst: "/suid", Owner: "5", Mode: mode(0o755 | fs.ModeSetuid)},
			want: map[string]entry{"suid": {perm: 0o755 | fs.ModeSetuid, uid: 5, gid: 5, content: "file"}}},
		{name: "absolute image symlink resolves inside the root",
			c:    Copy{Src: "f", Dst: "/opt/etc/pwned"},
			want: map[string]entry{"etc/pwned": {perm: 0o640, content: "file"}}},
		{name: "escaping relative image symlink resolves inside the root",
			c:    Copy{Src: "f", Dst: "/opt/up/pwned2"},
			want: map[string]entry{"etc/pwned2": {perm: 0o640, content: "file"}}},
		{name: "symlink loop fails",
			c:   Copy{Src: "f", Dst: "/opt/loop/x"},
			err: "too many"},
		{name: "unknown user", c: Copy{Src: "f", Dst: "/u", Owner: "nobody"}, err: `user "nobody"`, notIn: []string{"u"}},
		{name: "unknown group", c: Copy{Src: "f", Dst: "/u", Owner: "0:daemon"}, err: `group "daemon"`, notIn: []string{"u"}},
		{name: "source leaves the context", c: Copy{Src: "../x", Dst: "/u"}, err: "leaves", notIn: []string{"u"}},
		{name: "absolute source", c: Copy{Src: "/etc/passwd", Dst: "/u"}, err: "absolute", notIn: []string{"u"}},
		{name: "dir over a file", c: Copy{Src: "tree", Dst: "/srv/old"}, err: "not a directory"},
		{name: "file over a dir inside a tree", c: Copy{Src: "f", Dst: "/existing/dir/"}, want: map[string]entry{"existing/dir/f": {perm: 0o640, content: "file"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, cdir := t.TempDir(), t.TempDir()
			tree(t, root, image)
			tree(t, cdir, ctx)
			for _, p := range []string{"f", "tree/a", "tree/sub/b", "tree/lib/x", "tree/srv/new"} {
				if err := os.Chmod(filepath.Join(cdir, p), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(filepath.Join(cdir, "tree/sub"), 0o711); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"f", "tree/a", "tree/sub/l"} {
				if err := lchtimes(filepath.Join(cdir, p), old); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []string{"tree/sub", "tree"} {
				if err := os.Chtimes(filepath.Join(cdir, p), older, older); err != nil {
					t.Fatal(err)
				}
			}
			err := CopyInto(root, cdir, tc.c)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				check(t, root, name, want)
			}
			for _, name := range tc.notIn {
				if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
					t.Errorf("%s was made", name)
				}
			}
		})
	}
	for _, p := range []string{"/etc/pwned", "/etc/pwned2"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s written on the host", p)
		}
	}
}

// lchtimes sets a path's times without following a symlink.
func lchtimes(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// TestCopyIntoRefusesSpecialFiles: a FIFO, a socket or a device in the
// source is refused, by name, before anything is written.
func TestCopyIntoRefusesSpecialFiles(t *testing.T) {
	root, cdir := t.TempDir(), t.TempDir()
	tree(t, cdir, map[string]string{"d/a": "a", "d/z/": ""})
	if err := syscall.Mkfifo(filepath.Join(cdir, "d/z/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := CopyInto(root, cdir, Copy{Src: "d", Dst: "/x"})
	if !errors.Is(err, ErrSourceType) || !strings.Contains(err.Error(), "d/z/fifo") {
		t.Fatalf("err = %v, want ErrSourceType naming d/z/fifo", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "x")); err == nil {
		t.Error("/x made before the FIFO was found")
	}
}

// TestCopyIntoSourceSymlinkOut: the source, or a directory on its way, a
// symlink out of the context directory is refused; a symlink inside a
// copied directory is copied as it is, never read.
func TestCopyIntoSourceSymlinkOut(t *testing.T) {
	root, cdir, outside := t.TempDir(), t.TempDir(), t.TempDir()
	tree(t, outside, map[string]string{"secret": "s"})
	tree(t, cdir, map[string]string{
		"abs":     "->" + filepath.Join(outside, "secret"),
		"rel":     "->../" + filepath.Base(outside) + "/secret",
		"dir":     "->" + outside,
		"ok/link": "->" + filepath.Join(outside, "secret"),
		"inside":  "->ok",
	})
	for _, src := range []string{"abs", "rel", "dir/secret", "dir"} {
		if err := CopyInto(root, cdir, Copy{Src: src, Dst: "/x"}); err == nil || !strings.Contains(err.Error(), "escapes") {
			t.Errorf("%s: err = %v, want an escape refused", src, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "x")); err == nil {
		t.Error("/x made from outside the context")
	}
	if err := CopyInto(root, cdir, Copy{Src: "inside", Dst: "/y"}); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(root, "y/link")); err != nil || l != filepath.Join(outside, "secret") {
		t.Errorf("y/link = %q, %v: want the symlink as it is", l, err)
	}
}

// TestCopyIntoUserDBOutside: an image's /etc/passwd that is a symlink out
// of the root is not read on the host: the host's users are unknown.
func TestCopyIntoUserDBOutside(t *testing.T) {
	testenv.Root(t, "chown of copied files")
	root, cdir := t.TempDir(), t.TempDir()
	tree(t, cdir, map[string]string{"f": "f"})
	tree(t, root, map[string]string{"etc/passwd": "->../../../../../../../../etc/passwd"})
	err := CopyInto(root, cdir, Copy{Src: "f", Dst: "/f", Owner: "daemon"})
	if err == nil {
		t.Fatal("the host's /etc/passwd was read for the image's users")
	}
	if err := os.Remove(filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A FIFO: refused, never blocked on.
	if err := CopyInto(root, cdir, Copy{Src: "f", Dst: "/f", Owner: "daemon"}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}
