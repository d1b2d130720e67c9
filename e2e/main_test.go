package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"snap/internal/fixtures"
	"snap/internal/testenv"
)

// bin is the snap binary built for these tests; baseTar a busybox rootfs
// tarball made as internal/fixtures/demo.sh makes its base.
var bin, baseTar string

func TestMain(m *testing.M) {
	os.Exit(setup(m))
}

func setup(m *testing.M) int {
	dir, err := os.MkdirTemp("", "snap-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "bin", "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := fixtures.Base(filepath.Join(dir, "rootfs")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	baseTar = filepath.Join(dir, "busybox-rootfs.tar.gz")
	if out, err := exec.Command("tar", "-C", filepath.Join(dir, "rootfs"), "--numeric-owner", "-czf", baseTar, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "tar: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// require skips a test whose need is not met, except in CI, where it fails.
func require(t *testing.T, ok bool, what string) {
	t.Helper()
	testenv.Need(t, ok, what)
}

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.Root(t, "containers and overlay mounts")
}

// cmdTimeout bounds every snap command, so a hang fails the test instead of
// blocking the run.
const cmdTimeout = 2 * time.Minute

// env is one store and working directory for the binary.
type env struct {
	t    *testing.T
	dir  string
	root string
	vars []string // more environment for snap (DOCKER_CONFIG)
}

// newEnv makes a fresh store holding base:1, imported from the busybox
// tarball; containers left in it are removed at the end.
func newEnv(t *testing.T) *env {
	t.Helper()
	requireRoot(t)
	e := &env{t: t, dir: t.TempDir()}
	e.root = filepath.Join(e.dir, "store")
	e.must("import", baseTar, "base:1")
	t.Cleanup(func() {
		ids, _, _ := e.snap("ps", "-a", "-q")
		for _, id := range strings.Fields(ids) {
			e.snap("rm", "-f", id)
		}
	})
	return e
}

// on is e for a subtest.
func (e *env) on(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

func (e *env) environ() []string {
	return append(append(os.Environ(), "SNAP_ROOT="+e.root, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH")), e.vars...)
}

// snap runs the binary and returns its stdout, stderr and exit code.
func (e *env) snap(args ...string) (string, string, int) {
	e.t.Helper()
	return e.snapIn(nil, args...)
}

// snapIn is snap with stdin read from in (nil: none).
func (e *env) snapIn(in io.Reader, args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env, cmd.Dir, cmd.Stdin = e.environ(), e.dir, in
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("snap %q: still running after %v", args, cmdTimeout)
	}
	if err != nil && cmd.ProcessState == nil {
		e.t.Fatalf("snap %q: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func (e *env) must(args ...string) string {
	e.t.Helper()
	out, errs, code := e.snap(args...)
	if code != 0 {
		e.t.Fatalf("snap %q: exit %d: %s", args, code, errs)
	}
	return out
}

// mounts lists the mount points under the store, as the kernel has them.
func (e *env) mounts() []string {
	e.t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(e.root))
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// status is the container's STATUS column in snap ps -a.
func (e *env) status(name string) string {
	e.t.Helper()
	for _, line := range strings.Split(e.must("ps", "-a"), "\n") {
		f := strings.Split(line, "   ")
		if len(f) > 1 && strings.TrimSpace(f[len(f)-1]) == name {
			for i := len(f) - 2; i >= 0; i-- {
				if s := strings.TrimSpace(f[i]); s != "" {
					return s
				}
			}
		}
	}
	return ""
}

// waitStatus polls snap ps until the container's status starts with want
// (a detached container's exit is seen by no command); it fails the test
// after a generous bound.
func (e *env) waitStatus(name, want string) string {
	e.t.Helper()
	deadline := time.Now().Add(cmdTimeout)
	for {
		s := e.status(name)
		if strings.HasPrefix(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s: status %q, never %q", name, s, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
