package container

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"snap/commit"
	"snap/diff"
	"snap/internal/fixtures"
	"snap/internal/testenv"
	"snap/sourcing"
	"snap/store"
)

// imageFrom commits the busybox base, changed by modify, as tag.
func imageFrom(t *testing.T, st *store.Store, tag string, changes []string, modify func(root string)) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := fixtures.Base(dir); err != nil {
		t.Fatal(err)
	}
	modify(dir)
	if _, err := commit.Commit(context.Background(), st, sourcing.Dir{Root: dir}, commit.Options{Tag: tag, Changes: changes}); err != nil {
		t.Fatal(err)
	}
}

// hostPath is a path under the host's /tmp no other test uses; it is gone
// at the end.
func hostPath(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join("/tmp", "snap-"+name+"-"+strings.ReplaceAll(t.Name(), "/", "_"))
	os.RemoveAll(p)
	t.Cleanup(func() { os.RemoveAll(p) })
	return p
}

// runIn runs o in the foreground and returns its output and exit code, or
// the error of its create or start.
func runIn(m *Manager, o CreateOptions) (string, int, error) {
	meta, err := m.Create(o)
	if err != nil {
		return "", 0, err
	}
	defer m.Remove(meta, true)
	var out bytes.Buffer
	code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false)
	return out.String(), code, err
}

// TestVolumeTargetsStayInRootfs: an image's VOLUME and a -v destination
// with "..", and a -v destination through the image's symlink to an
// absolute host-looking path, are resolved inside the rootfs as runc
// resolves them: nothing is made on the host, and the bind is where the
// container sees the path.
func TestVolumeTargetsStayInRootfs(t *testing.T) {
	st, m := setup(t)
	pwn, pwn2, pwn3, linked := hostPath(t, "pwn"), hostPath(t, "pwn2"), hostPath(t, "pwn3"), hostPath(t, "linked")
	up := strings.Repeat("/..", 30) // more than the store is deep
	imageFrom(t, st, "vol:1", []string{"VOLUME " + up + pwn}, func(root string) {
		if err := os.Symlink(linked, filepath.Join(root, "data")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(up[1:]+linked, filepath.Join(root, "rel")); err != nil {
			t.Fatal(err)
		}
	})
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := "cat " + pwn2 + "/f " + linked + "/sub/f " + pwn3 + "/f; test -d " + pwn + " && echo volume"
	out, code, err := runIn(m, CreateOptions{Image: "vol:1", Args: []string{"sh", "-c", script},
		Volumes: []string{src + ":" + up + pwn2, src + ":/data/sub:ro", src + ":/rel" + up + pwn3}})
	for _, p := range []string{pwn, pwn2, pwn3, linked} {
		if _, serr := os.Lstat(p); serr == nil {
			t.Errorf("%s was made on the host", p)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if want := "from the host\nfrom the host\nfrom the host\nvolume\n"; out != want || code != 0 {
		t.Errorf("in the container: %q exit %d, want %q", out, code, want)
	}
}

// TestFileBindMount is moby's TestCommitWithHostBindMount and more: a file
// bind (/dev/null, a host file read-only), a directory bind read-write;
// the commit after them runs and holds none of the bind targets.
func TestFileBindMount(t *testing.T) {
	st, m := setup(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "x.conf")
	if err := os.WriteFile(file, []byte("conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	script := "test -c /winning && cat /etc/x.conf && ! echo no 2>/dev/null > /etc/x.conf && echo w > /srv/rw/out && echo changed > /etc/motd"
	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "bind-commit", Args: []string{"sh", "-c", script},
		Volumes: []string{"/dev/null:/winning", file + ":/etc/x.conf:ro", rw + ":/srv/rw:rw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	var out bytes.Buffer
	code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false)
	if err != nil || code != 0 || out.String() != "conf\n" {
		t.Fatalf("run: %q exit %d %v", out.String(), code, err)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "w\n" {
		t.Errorf("the rw bind got %q", b)
	}
	if b, _ := os.ReadFile(file); string(b) != "conf\n" {
		t.Errorf("the ro bind's file is now %q", b)
	}
	var listed []string
	o, err := Committable{Name: "bind-commit"}.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	o.Changes.Walk(context.Background(), func(c diff.Change) error { listed = append(listed, c.String()); return nil })
	if want := []string{"C /etc", "C /etc/motd"}; !slices.Equal(listed, want) {
		t.Errorf("changes %q, want %q (no bind target)", listed, want)
	}
	if _, err := commit.Commit(context.Background(), st, Committable{Name: "bind-commit"}, commit.Options{Tag: "bindtest:1"}); err != nil {
		t.Fatal(err)
	}
	if out, code, err := runIn(m, CreateOptions{Image: "bindtest:1", Args: []string{"sh", "-c", "cat /etc/motd; ls /winning /etc/x.conf /srv 2>&1 | wc -l"}}); err != nil || code != 0 || out != "changed\n3\n" {
		t.Errorf("the commit runs: %q exit %d %v", out, code, err)
	}
}

// TestUserLookupInRootfs: -u reads the image's passwd and group inside its
// rootfs: a symlink to a host file is resolved in the rootfs, a FIFO or a
// device is refused at once, only the first MiB of a huge file is read,
// group names come from /etc/group, uid:gid and the default user need no
// file.
func TestUserLookupInRootfs(t *testing.T) {
	st, m := setup(t)
	hostPasswd := hostPath(t, "passwd")
	if err := os.WriteFile(hostPasswd, []byte("hostonly:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	images := map[string]func(root string) error{
		"link": func(root string) error {
			os.Remove(filepath.Join(root, "etc/passwd"))
			return os.Symlink(hostPasswd, filepath.Join(root, "etc/passwd"))
		},
		"fifo": func(root string) error {
			os.Remove(filepath.Join(root, "etc/passwd"))
			return unix.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644)
		},
		"zero": func(root string) error {
			os.Remove(filepath.Join(root, "etc/passwd"))
			return unix.Mknod(filepath.Join(root, "etc/passwd"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5)))
		},
		"huge": func(root string) error {
			return os.Truncate(filepath.Join(root, "etc/passwd"), 64<<20)
		},
		"groups": func(root string) error {
			return os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nstaff:x:50:user\nuser:x:1000:\n"), 0o644)
		},
	}
	for name, modify := range images {
		imageFrom(t, st, name+":1", nil, func(root string) {
			if err := modify(root); err != nil {
				t.Fatal(err)
			}
		})
	}
	tests := []struct {
		image, user string
		out         string // "" : the start fails
		refused     bool   // with ErrUserDB
	}{
		{"link:1", "hostonly", "", false},
		{"link:1", "4242:4242", "4242 4242 4242 \n", false},
		{"fifo:1", "root", "", true},
		{"zero:1", "root", "", true},
		{"huge:1", "root", "0 0 0 \n", false}, // its first MiB is read
		{"huge:1", "", "0 0 0 \n", false},
		{"fifo:1", "", "0 0 0 \n", false}, // the default user needs no file
		{"fifo:1", "7:8", "7 8 8 \n", false},
		{"groups:1", "user", "1000 1000 50 1000\n", false}, // the kernel sorts the groups
		{"groups:1", "user:staff", "1000 50 50 \n", false},
		{"groups:1", "root:user", "0 1000 1000 \n", false},
		{"groups:1", "user:nogroup", "", false},
	}
	// id would read the FIFO too: the ids come from the kernel.
	const ids = `while read k v rest; do case $k in Uid:|Gid:) echo -n "$v ";; Groups:) echo "$v $rest";; esac; done < /proc/self/status`
	for _, tc := range tests {
		t.Run(tc.image+"/"+tc.user, func(t *testing.T) {
			type result struct {
				out  string
				code int
				err  error
			}
			done := make(chan result, 1)
			go func() {
				out, code, err := runIn(m, CreateOptions{Image: tc.image, User: tc.user, Args: []string{"sh", "-c", ids}})
				done <- result{out, code, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute): // a bound on a hang, not a timing
				t.Fatalf("-u %s on %s: still starting after a minute", tc.user, tc.image)
			}
			if tc.out == "" {
				if r.err == nil {
					t.Fatalf("-u %s on %s: ran (%q), want an error", tc.user, tc.image, r.out)
				}
				if tc.refused != errors.Is(r.err, ErrUserDB) || !strings.Contains(r.err.Error(), tc.user) {
					t.Errorf("-u %s on %s: %v", tc.user, tc.image, r.err)
				}
				return
			}
			if r.err != nil || r.code != 0 || r.out != tc.out {
				t.Errorf("-u %s on %s: %q exit %d %v, want %q", tc.user, tc.image, r.out, r.code, r.err, tc.out)
			}
		})
	}
}

// TestExecUserFIFO: a container that makes its /etc/passwd a FIFO cannot
// make exec hang: the exec fails at once, naming the file.
func TestExecUserFIFO(t *testing.T) {
	_, m := setup(t)
	meta, err := m.Create(CreateOptions{Image: "base:1", User: "root", Args: []string{"sh", "-c", "rm /etc/passwd; mkfifo /etc/passwd; touch /ready; sleep 600"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(m.Rootfs(meta.ID), "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container never made its FIFO")
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := m.Exec(meta, ExecOptions{Args: []string{"true"}}, Stdio{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUserDB) || !strings.Contains(err.Error(), "/etc/passwd") {
			t.Errorf("exec: %v, want a refusal naming /etc/passwd", err)
		}
	case <-time.After(time.Minute): // a bound on a hang, not a timing
		m.Kill(meta, unix.SIGKILL)
		t.Fatal("exec still waits on the FIFO after a minute")
	}
}

// TestHostnameNotCommitted: HOSTNAME is in the process's env, as docker
// gives it, and in no committed Env, however many generations; the run's
// -e goes first, then the image's it does not set (docker's merge).
func TestHostnameNotCommitted(t *testing.T) {
	st, m := setup(t)
	imageFrom(t, st, "env:0", []string{"ENV FOO=bar"}, func(string) {})
	runs := []struct {
		env  []string
		want []string
	}{
		{nil, []string{"FOO=bar"}},
		{[]string{"A=1", "FOO=baz"}, []string{"A=1", "FOO=baz"}},
		{[]string{"B=2"}, []string{"B=2", "A=1", "FOO=baz"}},
	}
	for i, r := range runs {
		meta, err := m.Create(CreateOptions{Image: "env:" + string(rune('0'+i)), Env: r.env, Args: []string{"sh", "-c", "echo $HOSTNAME"}})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if code, err := m.Start(context.Background(), meta, Stdio{Out: &out}, false); err != nil || code != 0 || out.String() != meta.Hostname+"\n" {
			t.Errorf("generation %d: HOSTNAME %q exit %d %v, want %s", i, out.String(), code, err, meta.Hostname)
		}
		img, err := commit.Commit(context.Background(), st, Committable{Name: meta.Name}, commit.Options{Tag: "env:" + string(rune('1'+i))})
		if err != nil {
			t.Fatal(err)
		}
		m.Remove(meta, true)
		if got := img.Config.Config.Env; !slices.Equal(got, r.want) {
			t.Errorf("generation %d: committed Env %q, want %q", i+1, got, r.want)
		}
	}
}

// TestWorkdirInRootfs: -w is resolved inside the rootfs and made there as
// docker makes it, through the image's symlinks (a dangling one too),
// never on the host; a relative one is refused as docker refuses it.
func TestWorkdirInRootfs(t *testing.T) {
	st, m := setup(t)
	pwn, linked := hostPath(t, "pwnw"), hostPath(t, "linkedw")
	imageFrom(t, st, "wd:1", nil, func(root string) {
		if err := os.Symlink(linked, filepath.Join(root, "data")); err != nil {
			t.Fatal(err)
		}
	})
	tests := []struct{ cwd, out string }{
		{strings.Repeat("/..", 30) + pwn, pwn + "\n"},
		{"/data/sub", linked + "/sub\n"},
		{"/tmp/a/../b", "/tmp/b\n"},
	}
	for _, tc := range tests {
		out, code, err := runIn(m, CreateOptions{Image: "wd:1", Cwd: tc.cwd, Args: []string{"sh", "-c", "cd -P .; pwd"}})
		if err != nil || code != 0 || out != tc.out {
			t.Errorf("-w %s: %q exit %d %v, want %q", tc.cwd, out, code, err, tc.out)
		}
	}
	for _, p := range []string{pwn, linked} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was made on the host", p)
		}
	}
	if _, _, err := runIn(m, CreateOptions{Image: "wd:1", Cwd: "rel", Args: []string{"true"}}); !errors.Is(err, ErrNotAbsolute) {
		t.Errorf("-w rel: %v", err)
	}
}

// TestImageFSResolve: mount points are resolved through the layers as the
// overlay shows them: a whiteout or an opaque directory hides a lower
// symlink, a visible one is followed inside the root, ".." stops at it.
func TestImageFSResolve(t *testing.T) {
	testenv.Root(t, "whiteouts (mknod) and trusted xattrs")
	top, mid, bottom := t.TempDir(), t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"gone", "etc", "srv", "usr/lib"} {
		must(os.MkdirAll(filepath.Join(bottom, d), 0o755))
	}
	must(os.Symlink("/tmp/host", filepath.Join(bottom, "gone/link")))
	must(os.Symlink("/tmp/host", filepath.Join(bottom, "etc/link")))
	must(os.Symlink("../../../../usr/lib", filepath.Join(bottom, "srv/up")))
	must(os.WriteFile(filepath.Join(bottom, "usr/lib/file"), nil, 0o644))
	must(unix.Mknod(filepath.Join(mid, "gone"), unix.S_IFCHR, 0)) // whiteout
	must(os.Mkdir(filepath.Join(top, "etc"), 0o755))
	must(unix.Setxattr(filepath.Join(top, "etc"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.Mkdir(filepath.Join(top, "srv"), 0o755)) // not opaque: bottom's srv/up shows
	v, err := openImageFS([]string{top, mid, bottom})
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()
	tests := []struct {
		dest, rel string
		exists    bool
	}{
		{"/gone/link/x", "gone/link/x", false},
		{"/etc/link/x", "etc/link/x", false},
		{"/srv/up/x", "usr/lib/x", false},
		{"/srv/up/file", "usr/lib/file", true},
		{"/usr/../../usr/lib", "usr/lib", true},
	}
	for _, tc := range tests {
		rel, fi, err := v.resolve(tc.dest)
		if err != nil || rel != tc.rel || (fi != nil) != tc.exists {
			t.Errorf("%s: %q exists %v %v, want %q exists %v", tc.dest, rel, fi != nil, err, tc.rel, tc.exists)
		}
	}
	if _, _, err := v.resolve("/usr/lib/file/x"); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("through a file: %v", err)
	}
}

// TestExecWorkdirRelative: exec -w takes an absolute path only, as docker
// exec refuses "Cwd must be an absolute path", with nothing started.
func TestExecWorkdirRelative(t *testing.T) {
	_, m := setup(t)
	meta, err := m.Create(CreateOptions{Image: "base:1", Args: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Exec(meta, ExecOptions{Args: []string{"true"}, Cwd: "rel"}, Stdio{}); !errors.Is(err, ErrNotAbsolute) {
		t.Errorf("exec -w rel: %v", err)
	}
	if code, err := m.Exec(meta, ExecOptions{Args: []string{"true"}, Cwd: "/tmp"}, Stdio{}); err != nil || code != 0 {
		t.Errorf("exec -w /tmp: %d %v", code, err)
	}
}
