package capture

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"snap/internal/testenv"
)

func TestStepKey(t *testing.T) {
	mode := os.FileMode(0o644)
	base := Step{Run: "echo hi"}
	vars := map[string]string{"A": "1"}
	k := base.Key("sha256:p", "none", vars, "")
	if k != base.Key("sha256:p", "none", map[string]string{"A": "1"}, "") {
		t.Fatal("the same step gives two keys")
	}
	if k != base.Key("sha256:p", "none", vars, "sha256:ignored-for-run") {
		t.Error("a run step's key depends on sources")
	}
	cp := Step{Copy: &Copy{Src: "a", Dst: "/a"}}
	for name, other := range map[string]digest.Digest{
		"parent":      base.Key("sha256:q", "none", vars, ""),
		"network":     base.Key("sha256:p", "host", vars, ""),
		"var value":   base.Key("sha256:p", "none", map[string]string{"A": "2"}, ""),
		"var added":   base.Key("sha256:p", "none", map[string]string{"A": "1", "B": ""}, ""),
		"text":        Step{Run: "echo hi "}.Key("sha256:p", "none", vars, ""),
		"kind":        Step{User: "echo hi"}.Key("sha256:p", "none", vars, ""),
		"env":         Step{Env: []string{"echo hi"}}.Key("sha256:p", "none", vars, ""),
		"copy":        cp.Key("sha256:p", "none", vars, "sha256:s"),
		"copy mode":   Step{Copy: &Copy{Src: "a", Dst: "/a", Mode: &mode}}.Key("sha256:p", "none", vars, "sha256:s"),
		"copy owner":  Step{Copy: &Copy{Src: "a", Dst: "/a", Owner: "1"}}.Key("sha256:p", "none", vars, "sha256:s"),
		"copy source": cp.Key("sha256:p", "none", vars, "sha256:t"),
	} {
		if other == k || (name != "copy" && other == cp.Key("sha256:p", "none", vars, "sha256:s")) {
			t.Errorf("another %s, the same key", name)
		}
	}
}

func TestHashSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tree/a", "a")
	write("tree/sub/b", "b")
	if err := os.Symlink("../a", filepath.Join(dir, "tree/sub/l")); err != nil {
		t.Fatal(err)
	}
	hash := func(src string) digest.Digest {
		t.Helper()
		d, err := HashSources(dir, src)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := hash("tree")
	if hash("./tree/") != d {
		t.Error("tree and ./tree/ hash differently")
	}
	// Times are not content.
	if err := os.Chtimes(filepath.Join(dir, "tree/a"), time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if hash("tree") != d {
		t.Error("a new mtime changed the hash")
	}
	for _, tc := range []struct {
		name   string
		change func() error
	}{
		{"content", func() error { return os.WriteFile(filepath.Join(dir, "tree/a"), []byte("A"), 0o644) }},
		{"mode", func() error { return os.Chmod(filepath.Join(dir, "tree/sub/b"), 0o600) }},
		{"dir mode", func() error { return os.Chmod(filepath.Join(dir, "tree/sub"), 0o700) }},
		{"symlink target", func() error {
			os.Remove(filepath.Join(dir, "tree/sub/l"))
			return os.Symlink("../b", filepath.Join(dir, "tree/sub/l"))
		}},
		{"name", func() error { return os.Rename(filepath.Join(dir, "tree/sub/b"), filepath.Join(dir, "tree/sub/c")) }},
		{"new empty file", func() error { return os.WriteFile(filepath.Join(dir, "tree/e"), nil, 0o644) }},
	} {
		if err := tc.change(); err != nil {
			t.Fatal(err)
		}
		n := hash("tree")
		if n == d {
			t.Errorf("another %s, the same hash", tc.name)
		}
		d = n
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(dir, "tree/a"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
		if hash("tree") == d {
			t.Error("another owner, the same hash")
		}
	}
	if hash("tree/a") == hash("tree/sub") {
		t.Error("a file and a dir hash the same")
	}
}

func TestHashSourcesRefuses(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "fifo"), 0o755))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo/p"), 0o644))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "abs")))
	must(os.Symlink("../"+filepath.Base(outside)+"/secret", filepath.Join(dir, "rel")))
	must(os.Symlink(outside, filepath.Join(dir, "dirlink")))
	for _, tc := range []struct{ src, want string }{
		{"fifo", "fifo/p: a FIFO: not a regular file"},
		{"fifo/p", "not a regular file, directory or symlink"},
		{"abs", "escapes"},
		{"rel", "escapes"},
		{"dirlink/secret", "escapes"},
		{"../x", "leaves the capture file's directory"},
		{"/etc/passwd", "is absolute"},
		{"missing", "no such file"},
	} {
		_, err := HashSources(dir, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("HashSources(%s) = %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
	_, err := HashSources(dir, "fifo")
	if !errors.Is(err, ErrSourceType) {
		t.Errorf("fifo: %v is not ErrSourceType", err)
	}
	// A device too, where the test may make one.
	if os.Geteuid() == 0 {
		must(syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, 0x103))
		if _, err := HashSources(dir, "null"); !errors.Is(err, ErrSourceType) {
			t.Errorf("device: %v", err)
		}
	} else {
		testenv.Root(t, "a device node")
	}
}

func TestFileStepKeyAndSources(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Parse([]byte("base: b\nsteps:\n- run: x\n- copy: {src: f, dst: /f}\n"), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	k0, err0 := f.StepKey(0, "sha256:base")
	k1, err1 := f.StepKey(1, string(k0))
	s1, err2 := f.SourcesDigest()
	if err := errors.Join(err0, err1, err2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	k0b, _ := f.StepKey(0, "sha256:base")
	k1b, _ := f.StepKey(1, string(k0b))
	s2, _ := f.SourcesDigest()
	if k0b != k0 {
		t.Error("a copied file changed the key of the run step before it")
	}
	if k1b == k1 || s2 == s1 {
		t.Error("a copied file changed, the copy step's key or the sources digest did not")
	}
}
