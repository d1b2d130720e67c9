package capture

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sysprepTree is a root with something for every Generalize item, and
// neighbours each must leave alone.
var sysprepTree = map[string]string{
	"etc/machine-id":               "0123456789abcdef\n",
	"etc/hostname":                 "box\n",
	"var/lib/dbus/machine-id":      "0123456789abcdef\n",
	"etc/ssh/ssh_host_rsa_key":     "k",
	"etc/ssh/ssh_host_rsa_key.pub": "p",
	"etc/ssh/ssh_host_ed25519_key": "k",
	"etc/ssh/sshd_config":          "c",
	"tmp/a":                        "a",
	"tmp/d/b":                      "b",
	"tmp/.X11-unix/":               "",
	"var/tmp/x":                    "x",
	"var/cache/apt/archives/nginx_1.0_amd64.deb":                       "deb",
	"var/cache/apt/archives/lock":                                      "",
	"var/cache/apt/archives/partial/":                                  "",
	"var/cache/apt/pkgcache.bin":                                       "bin",
	"var/cache/apt/srcpkgcache.bin":                                    "bin",
	"var/cache/apt/other":                                              "o",
	"var/lib/apt/lists/lock":                                           "",
	"var/lib/apt/lists/partial/p":                                      "p",
	"var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "r",
	"var/lib/apt/lists/auxfiles/y":                                     "y",
	"var/lib/apt/extended_states":                                      "e",
	"var/cache/dnf/repo/b":                                             "b",
	"var/cache/yum/c":                                                  "c",
	"var/cache/apk/APKINDEX.tar.gz":                                    "i",
	"var/cache/other/keep":                                             "k",
	"var/log/syslog":                                                   "log",
	"var/log/apt/history.log":                                          "h",
	"var/log/empty":                                                    "",
	"var/log/link":                                                     "->syslog",
	"root/.bash_history":                                               "ls",
	"root/.profile":                                                    "p",
	"home/u/.zsh_history":                                              "ls",
	"home/u/.viminfo":                                                  "v",
	"home/u/.lesshst":                                                  "l",
	"home/u/notes":                                                     "n",
	"home/v/.python_history":                                           "p",
	"home/file":                                                        "f",
}

// itemChanges are paths each item must change: the rules below are then
// not vacuous.
var itemChanges = map[string][]string{
	"machine-id":            {"/etc/machine-id", "/var/lib/dbus/machine-id"},
	"ssh-hostkeys":          {"/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_rsa_key.pub", "/etc/ssh/ssh_host_ed25519_key"},
	"tmp-files":             {"/tmp/a", "/tmp/d", "/tmp/d/b", "/tmp/.X11-unix", "/var/tmp/x"},
	"package-manager-cache": {"/var/cache/apt/archives/nginx_1.0_amd64.deb", "/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin", "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", "/var/lib/apt/lists/auxfiles", "/var/cache/dnf/repo", "/var/cache/yum/c", "/var/cache/apk/APKINDEX.tar.gz"},
	"logfiles":              {"/var/log/syslog", "/var/log/apt/history.log"},
	"bash-history":          {"/root/.bash_history", "/home/u/.zsh_history", "/home/u/.viminfo", "/home/u/.lesshst", "/home/v/.python_history"},
}

// itemSkips are what each item reports it left alone.
var itemSkips = map[string][]string{
	"logfiles":     {"/var/log/link: a symlink, not emptied"},
	"bash-history": {"/home/file: a regular file, not a directory"},
}

type snapshot map[string]string // container path -> type and content

func snap(t *testing.T, root string) snapshot {
	t.Helper()
	s := snapshot{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := "/" + filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			s[name] = "->" + l
		case d.IsDir():
			s[name] = "dir"
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			s[name] = "=" + string(b)
		default:
			s[name] = d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestGeneralizeItems runs each item alone on the tree and holds what it
// did to the item's rules, path by path: what a removing rule covers is
// gone, what a truncating one covers is empty (regular files) or as it was,
// everything else as it was. The layer filter given Rules therefore does
// what Generalize does.
func TestGeneralizeItems(t *testing.T) {
	if got := GeneralizeItems(); len(got) != len(itemChanges) {
		t.Fatalf("items %q, the test knows %d", got, len(itemChanges))
	}
	for _, item := range GeneralizeItems() {
		t.Run(item, func(t *testing.T) {
			root := t.TempDir()
			tree(t, root, sysprepTree)
			before := snap(t, root)
			rep, err := GeneralizeOnly(root, item)
			if err != nil {
				t.Fatal(err)
			}
			after := snap(t, root)
			var rules []Rule
			for _, r := range Rules() {
				if r.Item == item {
					rules = append(rules, r)
				}
			}
			for p, was := range before {
				now, ok := after[p]
				r, covered := MatchRules(rules, p)
				switch {
				case covered && !r.Truncate:
					if ok {
						t.Errorf("%s: covered by %s, still there", p, r.Pattern)
					}
				case covered && strings.HasPrefix(was, "="):
					if now != "=" {
						t.Errorf("%s: covered by %s (truncate), is %q", p, r.Pattern, now)
					}
				default:
					if now != was {
						t.Errorf("%s: not covered, was %q, is %q", p, was, now)
					}
				}
			}
			for _, p := range itemChanges[item] {
				if after[p] == before[p] {
					t.Errorf("%s: unchanged", p)
				}
				if !slices.Contains(rep.Removed, p) && !slices.Contains(rep.Emptied, p) && !strings.HasPrefix(p, "/tmp/d/") {
					t.Errorf("%s: not in the report %+v", p, rep)
				}
			}
			var skipped []string
			for _, s := range rep.Skipped {
				skipped = append(skipped, s.String())
			}
			if want := itemSkips[item]; !slices.Equal(skipped, want) {
				t.Errorf("skipped %q, want %q", skipped, want)
			}
		})
	}
	// All of them, and twice: the second run has nothing to do.
	root := t.TempDir()
	tree(t, root, sysprepTree)
	if _, err := Generalize(root); err != nil {
		t.Fatal(err)
	}
	first := snap(t, root)
	rep, err := Generalize(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed)+len(rep.Emptied) != 0 {
		t.Errorf("second run changed %+v", rep)
	}
	if after := snap(t, root); !mapsEqual(first, after) {
		t.Error("second run changed the tree")
	}
	for _, d := range []string{"/tmp", "/var/tmp", "/var/log", "/var/lib/apt/lists/partial"} {
		if first[d] != "dir" {
			t.Errorf("%s: %q, want the directory kept", d, first[d])
		}
	}
	if first["/etc/machine-id"] != "=" {
		t.Errorf("/etc/machine-id: %q, want an empty file", first["/etc/machine-id"])
	}
	if _, err := GeneralizeOnly(root, "nope"); !errors.Is(err, ErrUnknownItem) {
		t.Errorf("unknown item: %v", err)
	}
}

func mapsEqual(a, b snapshot) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"/tmp/**", "/tmp", false},
		{"/tmp/**", "/tmp/a", true},
		{"/tmp/**", "/tmp/a/b", true},
		{"/tmp/**", "/tmpx/a", false},
		{"/a/**/b", "/a/b", true},
		{"/a/**/b", "/a/x/y/b", true},
		{"/a/**/b", "/a/x/y/c", false},
		{"/etc/ssh/ssh_host_*", "/etc/ssh/ssh_host_rsa_key", true},
		{"/etc/ssh/ssh_host_*", "/etc/ssh/sshd_config", false},
		{"/home/*/.bash_history", "/home/u/.bash_history", true},
		{"/home/*/.bash_history", "/home/u/x/.bash_history", false},
	} {
		if got := MatchGlob(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchGlob(%s, %s) = %v", tc.pattern, tc.name, got)
		}
	}
	rules := Rules()
	for p, want := range map[string]bool{
		"/var/lib/apt/lists/x":         true,
		"/var/lib/apt/lists/lock":      false,
		"/var/lib/apt/lists/partial":   false,
		"/var/lib/apt/lists/partial/x": false,
		"/var/lib/apt/lists":           false,
		"/tmp/a/b":                     true,
		"/etc/passwd":                  false,
	} {
		if _, got := MatchRules(rules, p); got != want {
			t.Errorf("MatchRules(%s) = %v", p, got)
		}
	}
	for _, r := range rules {
		if _, err := checkGlob(r.Pattern); err != nil {
			t.Errorf("rule %s: %v", r.Pattern, err)
		}
	}
}

// TestGeneralizeAttacks: a hostile image's symlinks, FIFOs and hardlinks
// make Generalize touch nothing outside what it names.
func TestGeneralizeAttacks(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root string)
		skip  string // a path the report must name as skipped
		check func(t *testing.T, root string)
	}{
		{name: "/var/log a symlink out",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"var/log": "->" + outside})
			},
			skip: "/var/log"},
		{name: "/var/log a symlink to /etc inside",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"var/log": "->../etc", "etc/passwd": "root"})
			},
			skip: "/var/log",
			check: func(t *testing.T, root string) {
				if b, _ := os.ReadFile(filepath.Join(root, "etc/passwd")); string(b) != "root" {
					t.Errorf("etc/passwd = %q", b)
				}
			}},
		{name: "/tmp and /var/tmp symlinks out",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"tmp": "->" + outside, "var/tmp": "->" + outside})
			},
			skip: "/tmp"},
		{name: "/var a symlink out",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"var": "->" + filepath.Dir(outside)})
			},
			skip: "/var"},
		{name: "symlinks inside /tmp removed, not followed",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"tmp/l": "->" + outside, "tmp/f": "->" + victim})
			},
			check: func(t *testing.T, root string) {
				if _, err := os.Lstat(filepath.Join(root, "tmp/l")); err == nil {
					t.Error("tmp/l kept")
				}
			}},
		{name: "machine-id a symlink to shadow",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"etc/machine-id": "->shadow", "etc/shadow": "root:x", "var/lib/dbus/machine-id": "->" + victim})
			},
			skip: "/etc/machine-id",
			check: func(t *testing.T, root string) {
				if b, _ := os.ReadFile(filepath.Join(root, "etc/shadow")); string(b) != "root:x" {
					t.Errorf("etc/shadow = %q", b)
				}
			}},
		{name: "a FIFO in /var/log is never opened",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"var/log/x/": ""})
				if err := syscall.Mkfifo(filepath.Join(root, "var/log/x/fifo"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			skip: "/var/log/x/fifo",
			check: func(t *testing.T, root string) {
				if fi, err := os.Lstat(filepath.Join(root, "var/log/x/fifo")); err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
					t.Errorf("fifo: %v %v", fi, err)
				}
			}},
		{name: "a directory symlink in /var/log",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"var/log/out": "->" + outside})
			},
			check: func(t *testing.T, root string) {
				if _, err := os.Readlink(filepath.Join(root, "var/log/out")); err != nil {
					t.Error(err)
				}
			},
			skip: "/var/log/out"},
		{name: "a home a symlink out",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"home/u": "->" + outside, "root": "->" + outside})
			},
			skip: "/home/u"},
		{name: "a history a symlink out: the link goes, not its target",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"root/.bash_history": "->" + victim})
			},
			check: func(t *testing.T, root string) {
				if _, err := os.Lstat(filepath.Join(root, "root/.bash_history")); err == nil {
					t.Error("root/.bash_history kept")
				}
			}},
		{name: "ssh host key symlinks: the links go",
			setup: func(t *testing.T, root string) {
				tree(t, root, map[string]string{"etc/ssh/ssh_host_x": "->" + victim, "etc/ssh/ssh_host_d": "->" + outside})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, ".bash_history"), []byte("h"), 0o644); err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			tc.setup(t, root)
			rep, err := Generalize(root)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
				t.Errorf("outside victim: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(outside, ".bash_history")); err != nil {
				t.Errorf("outside .bash_history: %v", err)
			}
			if tc.skip != "" && !slices.ContainsFunc(rep.Skipped, func(s Skip) bool { return s.Path == tc.skip }) {
				t.Errorf("%s not reported skipped: %v", tc.skip, rep.Skipped)
			}
			if tc.check != nil {
				tc.check(t, root)
			}
		})
	}
}

// TestGeneralizeHardlinkedLog: a log file that is another name of
// /etc/passwd is replaced by an empty file of the same metadata; the other
// name keeps its content.
func TestGeneralizeHardlinkedLog(t *testing.T) {
	root := t.TempDir()
	tree(t, root, map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "var/log/": ""})
	passwd, log := filepath.Join(root, "etc/passwd"), filepath.Join(root, "var/log/evil.log")
	if err := os.Link(passwd, log); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(log, 0o640); err != nil {
		t.Fatal(err)
	}
	xattr := unix.Setxattr(log, "user.snap", []byte("v"), 0) == nil
	mtime := time.Unix(1_234_567_890, 0)
	if err := os.Chtimes(log, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(log, 7, 8); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Lstat(log)
	rep, err := Generalize(root)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(passwd); string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("etc/passwd = %q", b)
	}
	after, err := os.Lstat(log)
	if err != nil {
		t.Fatal(err)
	}
	st, bst := after.Sys().(*syscall.Stat_t), before.Sys().(*syscall.Stat_t)
	if after.Size() != 0 || st.Nlink != 1 || os.SameFile(before, after) {
		t.Errorf("log: size %d nlink %d, same file %v", after.Size(), st.Nlink, os.SameFile(before, after))
	}
	if after.Mode() != before.Mode() || st.Uid != bst.Uid || st.Gid != bst.Gid || !after.ModTime().Equal(mtime) {
		t.Errorf("log: %v %d:%d %v, was %v %d:%d %v", after.Mode(), st.Uid, st.Gid, after.ModTime(), before.Mode(), bst.Uid, bst.Gid, mtime)
	}
	if xattr {
		buf := make([]byte, 8)
		if n, err := unix.Getxattr(log, "user.snap", buf); err != nil || string(buf[:n]) != "v" {
			t.Errorf("xattr: %q %v", buf[:n], err)
		}
	}
	if !slices.Contains(rep.Emptied, "/var/log/evil.log") {
		t.Errorf("report %+v", rep)
	}
	if names, _ := os.ReadDir(filepath.Join(root, "var/log")); len(names) != 1 {
		t.Errorf("var/log holds %v", names)
	}
	// A single-link file is truncated where it is, with its times.
	tree(t, root, map[string]string{"var/log/one": "x"})
	one := filepath.Join(root, "var/log/one")
	if err := os.Chtimes(one, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.Lstat(one)
	if _, err := GeneralizeOnly(root, "logfiles"); err != nil {
		t.Fatal(err)
	}
	a1, _ := os.Lstat(one)
	if a1.Size() != 0 || !os.SameFile(a1, b1) || !a1.ModTime().Equal(mtime) {
		t.Errorf("one: size %d, same %v, mtime %v", a1.Size(), os.SameFile(a1, b1), a1.ModTime())
	}
}
