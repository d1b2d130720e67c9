package container

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"snap/internal/testenv"
)

func TestParseIDMap(t *testing.T) {
	for _, c := range []struct {
		in   string
		want IDMap
		bad  bool
	}{
		{in: "0:100000:65536", want: IDMap{0, 100000, 65536}},
		{in: "1000:5:1", want: IDMap{1000, 5, 1}},
		{in: "0:100000", bad: true},
		{in: "0:100000:65536:1", bad: true},
		{in: "0:-1:10", bad: true},
		{in: "a:1:1", bad: true},
		{in: "0:1:0", bad: true},
		{in: "0:4294967290:10", bad: true},
	} {
		got, err := ParseIDMap(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseIDMap(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestCheckMap(t *testing.T) {
	for _, c := range []struct {
		name string
		ms   []IDMap
		err  error // nil: accepted; errAny: refused, any error
	}{
		{"one range", []IDMap{{0, 100000, 65536}}, nil},
		{"two ranges", []IDMap{{0, 100000, 1000}, {1000, 300000, 1}}, nil},
		{"host root", []IDMap{{0, 0, 65536}}, ErrHostRoot},
		{"host root second", []IDMap{{0, 100000, 1}, {1, 0, 1}}, ErrHostRoot},
		{"no container root", []IDMap{{1, 100000, 10}}, ErrHostRoot},
		{"container overlap", []IDMap{{0, 100000, 10}, {5, 200000, 10}}, errAny},
		{"host overlap", []IDMap{{0, 100000, 10}, {100, 100005, 10}}, errAny},
	} {
		err := checkMap("uid map", c.ms)
		switch {
		case c.err == nil && err != nil, c.err != nil && err == nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != nil && c.err != errAny && !errors.Is(err, c.err):
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
}

var errAny = errors.New("any error")

func TestAllocate(t *testing.T) {
	const n = AutoSize
	pool := []IDMap{{HostID: 100000, Size: 4 * n}}
	for _, c := range []struct {
		name string
		pool []IDMap
		used []IDMap
		want uint32
		err  error
	}{
		{"empty", pool, nil, 100000, nil},
		{"first taken", pool, []IDMap{{0, 100000, n}}, 100000 + n, nil},
		{"a gap", pool, []IDMap{{0, 100000, n}, {0, 100000 + 2*n, n}}, 100000 + n, nil},
		{"an odd range in the first block", pool, []IDMap{{0, 100010, 5}}, 100000 + n, nil},
		{"an odd range across blocks", pool, []IDMap{{0, 100000 + n - 1, 2}}, 100000 + 2*n, nil},
		{"unrelated ranges", pool, []IDMap{{0, 1000, 10}, {0, 100000 + 4*n, n}}, 100000, nil},
		{"full", pool, []IDMap{{0, 100000, 4 * n}}, 0, ErrNoIDs},
		{"too small", []IDMap{{HostID: 100000, Size: n - 1}}, nil, 0, ErrNoIDs},
		{"second pool range", []IDMap{{HostID: 100000, Size: n}, {HostID: 900000, Size: n}}, []IDMap{{0, 100000, 1}}, 900000, nil},
		{"default pool", defaultPool, nil, 524288, nil},
	} {
		got, err := allocate(c.pool, c.used, n)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%s: %d, %v; want %d, %v", c.name, got, err, c.want, c.err)
		}
	}
}

func TestReadSubids(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, body string
		want       []IDMap
		bad        bool
	}{
		{"past the last id", "user:100000:65536\nroot:1000000:1000000000\n# root:1:1\n\nroot:5000000000:1\n", nil, true},
		{"root's two", "user:100000:65536\nroot:1000000:65536\n# root:1:1\n\nroot:3000000:131072\n", []IDMap{{0, 1000000, 65536}, {0, 3000000, 131072}}, false},
		{"none", "user:100000:65536\n", nil, false},
		{"bad", "root:x:65536\n", nil, true},
	} {
		p := filepath.Join(dir, c.name)
		if err := os.WriteFile(p, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readSubids(p, "root")
		if (err != nil) != c.bad || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, %v; want %v, error %v", c.name, got, err, c.want, c.bad)
		}
	}
	if got, err := readSubids(filepath.Join(dir, "missing"), "root"); err != nil || got != nil {
		t.Errorf("a missing file: %v, %v", got, err)
	}
}

func TestApplyUserns(t *testing.T) {
	u := &Userns{UIDMap: []IDMap{{0, 200000, 65536}}, GIDMap: []IDMap{{0, 300000, 65536}}}
	count := func(s *specs.Spec) int {
		return len(slices.DeleteFunc(slices.Clone(s.Linux.Namespaces), func(ns specs.LinuxNamespace) bool { return ns.Type != specs.UserNamespace }))
	}
	sys := func(s *specs.Spec) specs.Mount {
		for _, m := range s.Mounts {
			if m.Destination == "/sys" {
				return m
			}
		}
		return specs.Mount{}
	}

	spec := specconv.Example()
	if err := applyUserns(spec, &Meta{}, ""); err != nil || count(spec) != 0 || spec.Linux.UIDMappings != nil {
		t.Errorf("no userns: %v, %d user namespaces, maps %v", err, count(spec), spec.Linux.UIDMappings)
	}

	spec = specconv.Example()
	if err := applyUserns(spec, &Meta{Security: Security{Userns: u}}, ""); err != nil {
		t.Fatal(err)
	}
	if count(spec) != 1 || !slices.Equal(spec.Linux.UIDMappings, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}) ||
		!slices.Equal(spec.Linux.GIDMappings, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}}) {
		t.Errorf("userns: %d user namespaces, maps %v %v", count(spec), spec.Linux.UIDMappings, spec.Linux.GIDMappings)
	}
	if m := sys(spec); m.Type != "sysfs" {
		t.Errorf("with a network namespace of its own, /sys is %+v, want sysfs", m)
	}

	// The host's network (no network namespace of its own): sysfs cannot
	// be mounted in the user namespace, the host's /sys is bound read-only.
	spec = specconv.Example()
	spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.NetworkNamespace })
	if err := applyUserns(spec, &Meta{Security: Security{Userns: u}}, ""); err != nil {
		t.Fatal(err)
	}
	if m := sys(spec); m.Type != "bind" || m.Source != "/sys" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rbind") {
		t.Errorf("with the host's network, /sys is %+v", m)
	}
	if _, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: "x", Spec: spec, NoNewKeyring: true}); err != nil {
		t.Errorf("libcontainer refuses the config: %v", err)
	}

	if err := applyUserns(specconv.Example(), &Meta{Security: Security{Userns: &Userns{Auto: true}}}, ""); err == nil {
		t.Error("an unsettled (auto, no maps) userns was applied")
	}
}

// TestMountUserns mounts an overlay as a user namespace container's is
// mounted and writes in it as the container's root, a host range id: the
// merged view shows each lower file's owner shifted into the range, and
// the upper keeps on-disk in-container ids for new files, copied-up files
// and whiteouts, what a commit then records.
func TestMountUserns(t *testing.T) {
	testenv.Root(t, "mounts")
	const host = 700000
	w := t.TempDir()
	if err := os.Chmod(filepath.Dir(w), 0o711); err != nil { // the range's root walks to merged
		t.Fatal(err)
	}
	lower, dir, merged := filepath.Join(w, "lower"), filepath.Join(w, "c"), filepath.Join(w, "merged")
	for _, d := range []string{lower, filepath.Join(lower, "gone"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, uid := range map[string]int{"root": 0, "user": 1000} {
		p := filepath.Join(lower, name)
		if err := os.WriteFile(p, []byte(name+"\n"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o666); err != nil { // the range's root has no capability on the host
			t.Fatal(err)
		}
	}
	meta := &Meta{Security: Security{Userns: &Userns{UIDMap: []IDMap{{0, host, AutoSize}}, GIDMap: []IDMap{{0, host, AutoSize}}}}}
	if err := mountUserns(meta, merged, []string{lower}, filepath.Join(dir, "upper"), filepath.Join(dir, "work")); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)

	owner := func(p string) [2]uint32 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return [2]uint32{st.Uid, st.Gid}
	}
	for name, want := range map[string]uint32{"root": host, "user": host + 1000, ".": host} {
		if got := owner(filepath.Join(merged, name)); got != [2]uint32{want, want} {
			t.Errorf("merged %s is %v, want %d", name, got, want)
		}
	}
	sh := exec.Command("/bin/busybox", "sh", "-c", "touch new && echo more >> root && echo more >> user && rmdir gone")
	sh.Dir = merged
	sh.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: host, Gid: host}}
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("as the range's root: %v: %s", err, out)
	}
	for name, want := range map[string]uint32{"new": 0, "root": 0, "user": 1000, "gone": 0} {
		if got := owner(filepath.Join(dir, "upper", name)); got != [2]uint32{want, want} {
			t.Errorf("upper %s is %v on disk, want %d", name, got, want)
		}
	}
	// Without a user namespace nothing is idmapped.
	merged2 := filepath.Join(w, "merged2")
	os.MkdirAll(filepath.Join(w, "c2", "upper"), 0o755)
	os.MkdirAll(filepath.Join(w, "c2", "work"), 0o755)
	os.Mkdir(merged2, 0o755)
	if err := mountUserns(&Meta{}, merged2, []string{lower}, filepath.Join(w, "c2", "upper"), filepath.Join(w, "c2", "work")); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(merged2, unix.MNT_DETACH)
	if got := owner(filepath.Join(merged2, "user")); got != [2]uint32{1000, 1000} {
		t.Errorf("no userns: user is %v", got)
	}
}
