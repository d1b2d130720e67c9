package e2e

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/go-archive/compression"

	"snap/store"
)

// usernsEnv is newEnv with a store a user namespace's root can reach: the
// test's temporary directory is 0700, and runc mounts the rootfs from inside
// the namespace (a real store's parents, /var/lib, are searchable).
func usernsEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	if err := os.Chmod(filepath.Dir(e.dir), 0o711); err != nil {
		t.Fatal(err)
	}
	return e
}

// uidMap is the container's /proc/self/uid_map (or gid_map) as numbers.
func uidMap(t *testing.T, out string) [][3]uint64 {
	t.Helper()
	var ms [][3]uint64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("id map line %q", line)
		}
		var m [3]uint64
		for i := range f {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				t.Fatalf("id map line %q: %v", line, err)
			}
			m[i] = n
		}
		ms = append(ms, m)
	}
	return ms
}

// TestUsernsAuto: with --userns=auto the container's root is root inside
// (uid 0, every capability of its namespace) and an unprivileged range of
// 65536 host ids outside; each container has a range of its own; without
// the flag the container runs in the host's namespace, as docker's do.
func TestUsernsAuto(t *testing.T) {
	e := usernsEnv(t)
	out := e.must("run", "--rm", "--userns=auto", "base:1", "sh", "-c", "id -u; id -g; echo; cat /proc/self/uid_map; echo; cat /proc/self/gid_map")
	parts := strings.Split(out, "\n\n")
	if len(parts) != 3 || parts[0] != "0\n0" {
		t.Fatalf("id and maps in the container:\n%s", out)
	}
	for _, p := range parts[1:] {
		ms := uidMap(t, p)
		if len(ms) != 1 || ms[0][0] != 0 || ms[0][1] == 0 || ms[0][2] != 65536 {
			t.Errorf("map %v, want 0 -> an unprivileged host range of 65536", ms)
		}
	}
	if out := e.must("run", "--rm", "base:1", "cat", "/proc/self/uid_map"); uidMap(t, out)[0] != [3]uint64{0, 0, 4294967295} {
		t.Errorf("without --userns, uid_map %q: want the host's", out)
	}

	// Two containers at once never share host ids.
	e.must("run", "-d", "--name", "ca", "--userns=auto", "base:1", "sleep", "60")
	e.must("run", "-d", "--name", "cb", "--userns=auto", "base:1", "sleep", "60")
	a := uidMap(t, e.must("exec", "ca", "cat", "/proc/self/uid_map"))[0]
	b := uidMap(t, e.must("exec", "cb", "cat", "/proc/self/uid_map"))[0]
	if a[1] < b[1]+b[2] && b[1] < a[1]+a[2] {
		t.Errorf("containers a %v and b %v share host ids", a, b)
	}
}

// TestUsernsMaps: --uidmap and --gidmap, podman's spelling, set the maps
// as given; --gidmap defaults to --uidmap; maps that would give the
// container host root, and bad spellings, are refused and make nothing.
func TestUsernsMaps(t *testing.T) {
	e := usernsEnv(t)
	out := e.must("run", "--rm", "--uidmap", "0:300000:70000", "base:1", "sh", "-c", "cat /proc/self/uid_map; echo; cat /proc/self/gid_map")
	parts := strings.Split(out, "\n\n")
	if len(parts) != 2 {
		t.Fatalf("maps:\n%s", out)
	}
	for _, p := range parts {
		if ms := uidMap(t, p); len(ms) != 1 || ms[0] != [3]uint64{0, 300000, 70000} {
			t.Errorf("map %v, want 0 300000 70000", ms)
		}
	}
	out = e.must("run", "--rm", "--uidmap", "0:400000:65536", "--gidmap", "0:500000:1000", "--gidmap", "1000:600000:1", "base:1", "cat", "/proc/self/gid_map")
	if ms := uidMap(t, out); len(ms) != 2 || ms[0] != [3]uint64{0, 500000, 1000} || ms[1] != [3]uint64{1000, 600000, 1} {
		t.Errorf("gid map %v", ms)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--userns=nope"}, 2, "--userns"},
		{[]string{"--uidmap", "0:100000"}, 2, "CONTAINER_ID:HOST_ID:SIZE"},
		{[]string{"--userns=auto", "--uidmap", "0:100000:10"}, 2, "together"},
		{[]string{"--gidmap", "0:100000:10"}, 2, "needs --uidmap"},
		{[]string{"--uidmap", "0:0:65536"}, 1, "unprivileged host id"},
		{[]string{"--uidmap", "1:100000:10"}, 1, "no container id 0"},
	} {
		args := append(append([]string{"run", "--rm"}, c.args...), "base:1", "true")
		_, errs, code := e.snap(args...)
		if code != c.code || !strings.HasPrefix(errs, "snap: ") || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("snap %q: exit %d, stderr %q; want exit %d and one line naming %q", args, code, errs, c.code, c.want)
		}
	}
	if out := e.must("ps", "-a", "-q"); out != "" {
		t.Errorf("refused runs left containers: %q", out)
	}
}

// TestUsernsCommitRecordsContainerIDs: what the container's root writes is
// owned by 0 on disk in its upper dir (the layers are idmapped mounts: no
// host range id ever lands on disk) and by 0 in the committed layer's tar
// headers, as without a user namespace; while it runs, the host sees the
// file as the container's host range, and the image then runs as usual.
func TestUsernsCommitRecordsContainerIDs(t *testing.T) {
	e := usernsEnv(t)
	id := strings.TrimSpace(e.must("run", "-d", "--name", "cc", "--userns=auto", "base:1", "sh", "-c",
		"touch /byroot && mkdir /home/user/made && chown 1000:1000 /home/user/made && echo more >> /etc/motd && rm /etc/group && touch /ready && sleep 60"))
	out := e.must("exec", "cc", "cat", "/proc/self/uid_map")
	hostRoot := uidMap(t, out)[0][1]
	for deadline := time.Now().Add(cmdTimeout); ; time.Sleep(50 * time.Millisecond) {
		if _, _, code := e.snap("exec", "cc", "test", "-e", "/ready"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container never got ready")
		}
	}
	owner := func(p string) (uint32, uint32) {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid, st.Gid
	}
	dir := filepath.Join(e.root, "containers", id)
	merged := strings.TrimSpace(e.must("inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", "cc"))
	if u, g := owner(filepath.Join(merged, "byroot")); u != uint32(hostRoot) || g != uint32(hostRoot) {
		t.Errorf("the host sees /byroot as %d:%d, want the range's root %d", u, g, hostRoot)
	}
	want := map[string][2]uint32{"byroot": {0, 0}, "home/user/made": {1000, 1000}, "etc/motd": {0, 0}, "etc/.wh.group": {0, 0}}
	for p, w := range want {
		if p == "etc/.wh.group" {
			p = "etc/group" // overlay's whiteout, a 0/0 device
		}
		if u, g := owner(filepath.Join(dir, "upper", p)); u != w[0] || g != w[1] {
			t.Errorf("upper/%s is %d:%d on disk, want %d:%d", p, u, g, w[0], w[1])
		}
	}
	e.must("commit", "cc", "img:2")

	st, err := store.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup("img:2")
	if err != nil {
		t.Fatal(err)
	}
	layers := img.Manifest.Layers
	rc, err := st.OpenBlob(layers[len(layers)-1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	dec, err := compression.DecompressStream(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if h.Uid != 0 && h.Uid != 1000 || h.Gid != 0 && h.Gid != 1000 {
			t.Errorf("layer entry %s owned by %d:%d, a host range id", h.Name, h.Uid, h.Gid)
		}
		if w, ok := want[name]; ok {
			seen[name] = true
			if uint32(h.Uid) != w[0] || uint32(h.Gid) != w[1] {
				t.Errorf("layer entry %s owned by %d:%d, want %d:%d", h.Name, h.Uid, h.Gid, w[0], w[1])
			}
		}
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("layer has no %s", p)
		}
	}
	e.must("rm", "-f", "cc")
	for _, userns := range []string{"--userns=host", "--userns=auto"} {
		out := e.must("run", "--rm", userns, "img:2", "sh", "-c", "stat -c '%n %u:%g' /byroot /home/user/made; test -e /etc/group || echo no group")
		if out != "/byroot 0:0\n/home/user/made 1000:1000\nno group\n" {
			t.Errorf("img:2 with %s:\n%s", userns, out)
		}
	}
}

// TestUsernsImageOwners: files of the image keep their owners inside (a
// file of uid 1000 is 1000's, the rest root's), so setuid binaries and
// services' files work; the container's root may change them (copy-up
// through the idmapped layers), and uid 1000 inside is not root.
func TestUsernsImageOwners(t *testing.T) {
	e := usernsEnv(t)
	e.must("run", "--name", "mk", "base:1", "sh", "-c", "echo u > /home/user/f && chown 1000:1000 /home/user/f && chmod 600 /home/user/f && cp /bin/busybox /bin/suid && chmod 4755 /bin/suid")
	e.must("commit", "mk", "owners:1")
	out := e.must("run", "--rm", "--userns=auto", "owners:1", "sh", "-c",
		"stat -c '%n %u:%g %a' /home/user/f /bin/suid /etc/passwd; cat /home/user/f; echo x >> /home/user/f && stat -c '%n %u:%g %a' /home/user/f")
	want := "/home/user/f 1000:1000 600\n/bin/suid 0:0 4755\n/etc/passwd 0:0 644\nu\n/home/user/f 1000:1000 600\n"
	if out != want {
		t.Errorf("owners inside:\n%s\nwant:\n%s", out, want)
	}
	// uid 1000 reads its own file; root's 0600 files stay root's.
	out, _, code := e.snap("run", "--rm", "--userns=auto", "-u", "1000", "owners:1", "sh", "-c", "cat /home/user/f; id -u; touch /etc/x")
	if code == 0 || out != "u\n1000\n" {
		t.Errorf("as uid 1000: exit %d, out %q; want its file, and no write to /etc", code, out)
	}
}

// TestUsernsHostFileDenied: the container's root is no host root: a host
// directory mounted with -v whose file is host root's, mode 0600, cannot be
// read or added to (EACCES); the same without --userns can, so the test
// proves the namespace and not the mount.
func TestUsernsHostFileDenied(t *testing.T) {
	e := usernsEnv(t)
	vol := filepath.Join(e.dir, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(vol, "secret")
	if err := os.WriteFile(secret, []byte("host root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "cat /v/secret; echo rc=$?; touch /v/new; echo rc=$?; chmod 666 /v/secret; echo rc=$?"
	out, errs, _ := e.snap("run", "--rm", "--userns=auto", "-v", vol+":/v", "base:1", "sh", "-c", script)
	if out != "rc=1\nrc=1\nrc=1\n" || strings.Count(errs, "Permission denied")+strings.Count(errs, "Operation not permitted") != 3 {
		t.Errorf("with --userns=auto: out %q, stderr %q; want three refusals", out, errs)
	}
	if out := e.must("run", "--rm", "-v", vol+":/v", "base:1", "cat", "/v/secret"); out != "host root only\n" {
		t.Errorf("without --userns: %q", out)
	}
	fi, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret is now %v", fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(vol, "new")); err == nil {
		t.Error("the container made a file in a host root directory")
	}
}

// TestUsernsUnreachableStore: a store under a directory others cannot
// search cannot hold a user namespace container (its root could not reach
// the rootfs): one line naming the directory, and no container made.
func TestUsernsUnreachableStore(t *testing.T) {
	e := newEnv(t) // under the test's 0700 temporary directory
	_, errs, code := e.snap("run", "--rm", "--userns=auto", "base:1", "true")
	if code != 1 || !strings.HasPrefix(errs, "snap: ") || !strings.Contains(errs, filepath.Dir(e.dir)+" (mode 0700)") || strings.Count(errs, "\n") != 1 {
		t.Errorf("exit %d, stderr %q; want one line naming %s", code, errs, filepath.Dir(e.dir))
	}
	if out := e.must("ps", "-a", "-q"); out != "" {
		t.Errorf("a container was made: %q", out)
	}
}

// TestUsernsRangesDistinct: containers made at the same time with
// --userns=auto each get a range of their own (they are taken under the
// store's containers lock), and a removed container's range is free again.
func TestUsernsRangesDistinct(t *testing.T) {
	e := usernsEnv(t)
	const n = 6
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, codes[i] = e.snap("create", "--name", "r"+strconv.Itoa(i), "--userns=auto", "base:1", "true")
		}()
	}
	wg.Wait()
	// What snap keeps of each container, read as a user of the store would.
	type idMap struct{ ContainerID, HostID, Size uint32 }
	ranges := func() map[string]idMap {
		t.Helper()
		metas, err := filepath.Glob(filepath.Join(e.root, "containers", "*", "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]idMap{}
		for _, p := range metas {
			var c struct {
				Name     string
				Security struct {
					Userns *struct{ UIDMap, GIDMap []idMap }
				}
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			u := c.Security.Userns
			if u == nil || len(u.UIDMap) != 1 || !slices.Equal(u.UIDMap, u.GIDMap) || u.UIDMap[0].ContainerID != 0 || u.UIDMap[0].Size != 65536 {
				t.Fatalf("container %s: userns %+v", c.Name, u)
			}
			out[c.Name] = u.UIDMap[0]
		}
		return out
	}
	got := ranges()
	if len(got) != n || slices.ContainsFunc(codes, func(c int) bool { return c != 0 }) {
		t.Fatalf("exit codes %v, containers %v", codes, got)
	}
	for a, ra := range got {
		for b, rb := range got {
			if a != b && ra.HostID < rb.HostID+rb.Size && rb.HostID < ra.HostID+ra.Size {
				t.Errorf("%s %+v and %s %+v share host ids", a, ra, b, rb)
			}
		}
	}
	lowest := "r0"
	for name, r := range got {
		if r.HostID < got[lowest].HostID {
			lowest = name
		}
	}
	e.must("rm", lowest)
	e.must("create", "--name", "again", "--userns=auto", "base:1", "true")
	if r := ranges()["again"]; r != got[lowest] {
		t.Errorf("a new container got %+v, not the freed %+v", r, got[lowest])
	}
}

// TestUsernsUpperClosedToTheRange: the upper of a user namespace container
// keeps in-container ids on disk, so a file the container made setuid root
// is setuid root on the host. Nobody but the host's root may reach it: not
// the container's root's host id (it walks to the rootfs, which runc mounts
// from inside the namespace) and not any other host user. The merged rootfs
// is for the range's root group only, where that file shows as the range's.
func TestUsernsUpperClosedToTheRange(t *testing.T) {
	e := usernsEnv(t)
	const hostRoot = 40000
	id := strings.TrimSpace(e.must("run", "-d", "--name", "su", "--uidmap", "0:40000:65536", "base:1", "sh", "-c",
		"cp /bin/busybox /suid && chmod 4755 /suid && touch /ready && sleep 60"))
	for deadline := time.Now().Add(cmdTimeout); ; time.Sleep(50 * time.Millisecond) {
		if _, _, code := e.snap("exec", "su", "test", "-e", "/ready"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container never got ready")
		}
	}
	upper := filepath.Join(e.root, "containers", id, "upper", "suid")
	var st syscall.Stat_t
	if err := syscall.Stat(upper, &st); err != nil || st.Uid != 0 || st.Mode&syscall.S_ISUID == 0 {
		t.Fatalf("upper/suid: %v, uid %d mode %o: want a setuid-root file on disk", err, st.Uid, st.Mode)
	}
	merged := strings.TrimSpace(e.must("inspect", "-f", "{{.GraphDriver.Data.MergedDir}}", "su"))
	as := func(uid, gid uint32, path string) error {
		cmd := exec.Command("/bin/busybox", "stat", "-c", "%u", path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	for _, who := range []struct {
		name     string
		uid, gid uint32
	}{{"the range's root", hostRoot, hostRoot}, {"another host user", 12345, 12345}} {
		if err := as(who.uid, who.gid, upper); err == nil {
			t.Errorf("%s reaches the setuid-root file in the upper (%s)", who.name, upper)
		}
	}
	if err := as(hostRoot, hostRoot, filepath.Join(merged, "suid")); err != nil {
		t.Errorf("the range's root cannot reach its rootfs: %v", err)
	}
	if err := as(12345, 12345, filepath.Join(merged, "suid")); err == nil {
		t.Errorf("another host user reaches the container's rootfs (%s)", merged)
	}
	e.must("rm", "-f", "su")
	if _, err := os.Stat(filepath.Dir(merged)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rm left the mount dir: %v", err)
	}
}

// TestUsernsWorkdir: a -w directory the image lacks is made, as docker
// makes it, in a user namespace too: owned by the container's root, which
// is what its commit records.
func TestUsernsWorkdir(t *testing.T) {
	e := usernsEnv(t)
	out := e.must("run", "--name", "wd", "--userns=auto", "-w", "/made/here", "-u", "1000", "base:1", "sh", "-c", "busybox pwd; busybox stat -c '%u:%g' . ..")
	if out != "/made/here\n0:0\n0:0\n" {
		t.Errorf("run -w in a user namespace: %q, want the dir made, owned by the container's root", out)
	}
	e.must("commit", "wd", "wd:1")
	if out := e.must("run", "--rm", "wd:1", "busybox", "stat", "-c", "%u:%g", "/made/here"); out != "0:0\n" {
		t.Errorf("the committed working directory is owned by %q, want 0:0", out)
	}
}
