package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"snap/commit"
	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// TestHostStdioNeverEntersContainer: a process of a run or an exec gets
// pipes (or /dev/null) for its stdin, stdout and stderr, never the file
// snap has there, as docker's never does. Given the user's terminal, a
// process left behind by an exec read what the user typed at the host's
// shell after the exec had returned; given a host file (snap's output
// redirected), the process could reopen it through /proc/self/fd and read
// or truncate what it held before.
func TestHostStdioNeverEntersContainer(t *testing.T) {
	_, m := setup(t)
	// The shell's own fds, as the process got them, into a file of the
	// container's.
	// (busybox runs readlink in the shell itself: its output goes through
	// a subshell's pipe, never through the shell's own fds.)
	const show = `l=$(for n in 0 1 2; do readlink /proc/$$/fd/$n; done); echo "$l" >/fds`
	stdio := map[string]func(t *testing.T) Stdio{
		"terminal": func(t *testing.T) Stdio {
			pty, slave, err := console.NewPty()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pty.Close() })
			f, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return Stdio{In: f, Out: f, Err: f}
		},
		"file": func(t *testing.T) Stdio {
			f, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return Stdio{In: f, Out: f, Err: f}
		},
	}
	check := func(t *testing.T, meta *Meta) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(m.Upper(meta.ID), "fds"))
		if err != nil {
			t.Fatal(err)
		}
		for n, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.HasPrefix(l, "pipe:") && l != "/dev/null" {
				t.Errorf("fd %d of the process is %s, want a pipe or /dev/null", n, l)
			}
		}
	}
	for name, mk := range stdio {
		t.Run("run/"+name, func(t *testing.T) {
			meta, err := m.Create(CreateOptions{Image: "base:1", Interactive: true, Args: []string{"sh", "-c", show}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Remove(meta, true)
			if code, err := m.Start(context.Background(), meta, mk(t), false); err != nil || code != 0 {
				t.Fatalf("run: %d, %v", code, err)
			}
			check(t, meta)
		})
		t.Run("exec/"+name, func(t *testing.T) {
			meta, err := m.Create(CreateOptions{Image: "base:1", Args: []string{"sleep", "600"}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Remove(meta, true)
			if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
				t.Fatal(err)
			}
			if code, err := m.Exec(meta, ExecOptions{Args: []string{"sh", "-c", show}, Interactive: true}, mk(t)); err != nil || code != 0 {
				t.Fatalf("exec: %d, %v", code, err)
			}
			check(t, meta)
		})
	}
}

// TestUsernsWorkdirMade: a working directory the image lacks is made in a
// container with a user namespace as without one, owned by the container's
// root (on disk too, what a commit records). snap made it as the host's
// root, an id the idmapped upper cannot store: EOVERFLOW, and no run.
func TestUsernsWorkdirMade(t *testing.T) {
	st, m := setup(t)
	// The range's root walks from / to the rootfs.
	for d := filepath.Dir(st.Root()); d != "/tmp"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	for _, cwd := range []string{"/newdir/deeper", "/tmp/x", "/root/y"} {
		t.Run(cwd, func(t *testing.T) {
			meta, err := m.Create(CreateOptions{Image: "base:1", Cwd: cwd, Security: Security{Userns: &Userns{Auto: true}},
				Args: []string{"sh", "-c", `echo "$PWD $(stat -c %u:%g .)"`}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Remove(meta, true)
			var out strings.Builder
			code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false)
			if err != nil || code != 0 || out.String() != cwd+" 0:0\n" {
				t.Fatalf("run -w %s: %q exit %d, %v; want %q", cwd, out.String(), code, err, cwd+" 0:0\n")
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(m.Upper(meta.ID), cwd), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
				t.Errorf("upper %s: %d:%d on disk, %v; want 0:0", cwd, st.Uid, st.Gid, err)
			}
		})
	}
}

// TestUsernsVolumeMade: a missing -v host directory that snap makes for a
// container with a user namespace is its root's, as docker's userns-remap
// makes it, so the container can write in it; what existed stays as it was.
func TestUsernsVolumeMade(t *testing.T) {
	st, m := setup(t)
	for d := filepath.Dir(st.Root()); d != "/tmp"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "new", "vol")
	meta, err := m.Create(CreateOptions{Image: "base:1", Volumes: []string{src + ":/data"}, Security: Security{Userns: &Userns{Auto: true}},
		Args: []string{"sh", "-c", "touch /data/x && stat -c %u:%g /data/x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	var out strings.Builder
	if code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false); err != nil || code != 0 || out.String() != "0:0\n" {
		t.Fatalf("touch in a made volume: %q exit %d, %v", out.String(), code, err)
	}
	root, _ := hostID(meta.Security.Userns.UIDMap, 0)
	group, _ := hostID(meta.Security.Userns.GIDMap, 0)
	for p, want := range map[string][2]uint32{dir: {0, 0}, filepath.Dir(src): {root, group}, src: {root, group}, filepath.Join(src, "x"): {root, group}} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || [2]uint32{st.Uid, st.Gid} != want {
			t.Errorf("%s: %d:%d, %v; want %v", p, st.Uid, st.Gid, err, want)
		}
	}
}

// TestOutputNeverBlocks: when snap cannot write a process's output (a full
// disk under the log), the rest is dropped and the process runs on, as
// docker drops what it cannot log; it never blocks on a full pipe.
func TestOutputNeverBlocks(t *testing.T) {
	_, m := setup(t)
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err := os.Open(p) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	meta, err := m.Create(CreateOptions{Image: "base:1", Args: []string{"dd", "if=/dev/zero", "bs=64k", "count=64"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := m.Start(context.Background(), meta, Stdio{Out: bad, Err: bad}, false)
		done <- result{code, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.code != 0 {
			t.Errorf("run: exit %d, %v; want 0", r.code, r.err)
		}
	case <-time.After(time.Minute): // a bound on a hang, not a timing
		m.Kill(meta, unix.SIGKILL)
		t.Fatal("the process still blocks on its output after a minute")
	}
}

// walkFrozen wraps a change source and records, at the start and at the
// end of its walk, whether the container is frozen.
type walkFrozen struct {
	diff.Walker
	m      *Manager
	meta   *Meta
	thawed *atomic.Int32
}

func (w walkFrozen) Walk(ctx context.Context, fn func(diff.Change) error) error {
	check := func() {
		c, err := libcontainer.Load(w.m.State, w.meta.ID)
		if st, _ := c.Status(); err != nil || st != libcontainer.Paused {
			w.thawed.Add(1)
		}
	}
	check()
	err := w.Walker.Walk(ctx, fn)
	check()
	return err
}

type walkFrozenSource struct {
	Committable
	m      *Manager
	thawed *atomic.Int32
}

func (s walkFrozenSource) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	o, err := s.Committable.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	meta, err := s.m.Get(s.Name)
	if err != nil {
		return nil, err
	}
	o.Changes = walkFrozen{o.Changes, s.m, meta, s.thawed}
	return o, nil
}

// TestConcurrentCommitsStayFrozen: commits of one running container at the
// same time each walk it frozen, and each succeeds. One commit's resume
// thawed the container while another walked it (a torn layer), and the
// other's own resume then failed, after its image was tagged.
func TestConcurrentCommitsStayFrozen(t *testing.T) {
	st, m := setup(t)
	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "busy", Args: []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /f$((i%20)); done"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
		t.Fatal(err)
	}
	var thawed atomic.Int32
	const rounds, n = 5, 6
	for r := range rounds {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = commit.Commit(context.Background(), st, walkFrozenSource{Committable{Name: "busy", Pause: true}, m, &thawed},
					commit.Options{Tag: fmt.Sprintf("busy:%d-%d", r, i)})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, commit %d: %v", r, i, err)
			}
		}
	}
	if k := thawed.Load(); k > 0 {
		t.Errorf("%d walks began or ended on a container that was not frozen", k)
	}
	if s := m.Status(meta); !strings.HasPrefix(s, "Up ") || strings.Contains(s, "Paused") {
		t.Errorf("after the commits the container is %q", s)
	}
}

// TestUnpauseWaitsForCommit: a user's unpause (or pause) waits for a
// pausing commit of the container to finish: in the middle of its walk it
// would thaw the container under it. The commit in flight is its lock,
// held here; the unpause gives up when its context ends, leaving the
// container frozen, and goes through once the commit is done.
func TestUnpauseWaitsForCommit(t *testing.T) {
	_, m := setup(t)
	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "frozen", Args: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
		t.Fatal(err)
	}
	unlock, err := m.lockCommit(context.Background(), meta) // a commit's walk
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Load(meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := pause(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func(context.Context, *Meta) error{m.Unpause, m.Pause} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := op(ctx, meta)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("during the commit: %v, want it to wait", err)
		}
	}
	if s := m.Status(meta); !strings.Contains(s, "Paused") {
		t.Errorf("during the commit the container is %q", s)
	}
	unlock()
	if err := m.Unpause(context.Background(), meta); err != nil {
		t.Fatal(err)
	}
	if s := m.Status(meta); !strings.HasPrefix(s, "Up ") || strings.Contains(s, "Paused") {
		t.Errorf("after the unpause the container is %q", s)
	}
}
