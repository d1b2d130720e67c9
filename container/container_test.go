package container

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"snap/commit"
	"snap/diff"
	"snap/internal/fixtures"
	"snap/internal/testenv"
	"snap/sourcing"
	"snap/store"
)

func setup(t *testing.T) (*store.Store, *Manager) {
	t.Helper()
	testenv.Root(t, "containers")
	w := t.TempDir()
	st, err := store.Open(filepath.Join(w, "store"))
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(w, "base")
	if err := fixtures.Base(base); err != nil {
		t.Fatal(err)
	}
	if _, err := commit.Commit(context.Background(), st, sourcing.Dir{Root: base}, commit.Options{Tag: "base:1", Message: "base"}); err != nil {
		t.Fatal(err)
	}
	return st, New(st)
}

func runFG(t *testing.T, m *Manager, o CreateOptions) (string, int) {
	t.Helper()
	meta, err := m.Create(o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	var out bytes.Buffer
	code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func TestRunForeground(t *testing.T) {
	_, m := setup(t)
	tests := []struct {
		o    CreateOptions
		out  string
		code int
	}{
		{CreateOptions{Image: "base:1", Args: []string{"sh", "-c", "echo hi; exit 7"}}, "hi\n", 7},
		{CreateOptions{Image: "base:1", Args: []string{"sh", "-c", "echo $A; pwd; id -u"}, Env: []string{"A=x"}, Cwd: "/tmp", User: "1000"}, "x\n/tmp\n1000\n", 0},
		{CreateOptions{Image: "base:1", Args: []string{"cat", "/etc/hostname"}, Hostname: "golden"}, "golden\n", 0},
		{CreateOptions{Image: "base:1", Args: []string{"sh", "-c", "sleep 10 & kill -9 $!; wait $!"}}, "Killed\n", 137},
	}
	for _, tc := range tests {
		out, code := runFG(t, m, tc.o)
		if out != tc.out || code != tc.code {
			t.Errorf("%v: output %q exit %d, want %q %d", tc.o.Args, out, code, tc.out, tc.code)
		}
	}
}

// frozenCheck wraps a change source and records whether the container was
// frozen when the walk began.
type frozenCheck struct {
	diff.Walker
	m      *Manager
	meta   *Meta
	frozen *bool
}

func (f frozenCheck) Walk(ctx context.Context, fn func(diff.Change) error) error {
	c, err := libcontainer.Load(f.m.State, f.meta.ID)
	if err == nil {
		st, _ := c.Status()
		*f.frozen = st == libcontainer.Paused
	}
	return f.Walker.Walk(ctx, fn)
}

type checkedSource struct {
	Committable
	m      *Manager
	frozen *bool
}

func (s checkedSource) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	o, err := s.Committable.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	meta, _ := s.m.Get(s.Name)
	o.Changes = frozenCheck{o.Changes, s.m, meta, s.frozen}
	return o, nil
}

// TestCommitRunningContainer commits a container while its process keeps
// writing: frozen during the walk, running afterwards; the image runs with
// the change, holds nothing of the init layer or the volume, and its
// history names the command.
func TestCommitRunningContainer(t *testing.T) {
	st, m := setup(t)
	vol := t.TempDir()
	script := "echo provisioned > /etc/motd; echo v > /data/in-volume; i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.02; done"
	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "prov", Args: []string{"sh", "-c", script}, Volumes: []string{vol + ":/data"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	frozen := false
	img, err := commit.Commit(context.Background(), st, checkedSource{Committable{Name: "prov", Pause: true}, m, &frozen}, commit.Options{Tag: "golden:1", Message: "golden v1"})
	if err != nil {
		t.Fatal(err)
	}
	if !frozen {
		t.Error("the container was not frozen during the walk")
	}
	if s := m.Status(meta); !strings.HasPrefix(s, "Up ") {
		t.Fatalf("after the commit the container is %q", s)
	}
	var out bytes.Buffer
	if code, err := m.Exec(meta, ExecOptions{Args: []string{"sh", "-c", "cat /etc/motd; exit 4"}}, Stdio{Out: &out}); err != nil || code != 4 || out.String() != "provisioned\n" {
		t.Errorf("exec: %q exit %d %v", out.String(), code, err)
	}
	c1, _ := os.ReadFile(filepath.Join(m.Rootfs(meta.ID), "tmp/counter"))
	time.Sleep(200 * time.Millisecond)
	c2, _ := os.ReadFile(filepath.Join(m.Rootfs(meta.ID), "tmp/counter"))
	if bytes.Equal(c1, c2) {
		t.Errorf("the process is not running after the commit (counter stays %q)", c1)
	}
	if h := img.Config.History[len(img.Config.History)-1]; h.CreatedBy != "sh -c "+script || h.Comment != "golden v1" {
		t.Errorf("history entry %+v", h)
	}
	ran, code := runFG(t, m, CreateOptions{Image: "golden:1", Args: []string{"sh", "-c", "cat /etc/motd; test -e /data/in-volume && echo volume leaked; true"}})
	if ran != "provisioned\n" || code != 0 {
		t.Errorf("the committed image: %q exit %d", ran, code)
	}
	var listed []string
	o, _ := Committable{Name: "prov"}.Open(context.Background(), st)
	o.Changes.Walk(context.Background(), func(c diff.Change) error { listed = append(listed, c.String()); return nil })
	for _, p := range listed {
		if strings.HasPrefix(p, "A /etc/hosts") || strings.HasPrefix(p, "A /proc") || strings.Contains(p, "/data") {
			t.Errorf("runtime or volume path in the commit: %s", p)
		}
	}
}

func TestBadContainers(t *testing.T) {
	st, m := setup(t)
	if _, err := commit.Commit(context.Background(), st, Committable{Name: "nope"}, commit.Options{}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown container: %v", err)
	}
	meta, err := m.Create(CreateOptions{Image: "base:1", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	m.Remove(meta, true)
	if _, err := commit.Commit(context.Background(), st, Committable{Name: meta.Name}, commit.Options{}); err == nil || !strings.Contains(err.Error(), meta.Name) {
		t.Errorf("removed container: %v", err)
	}
	meta, _ = m.Create(CreateOptions{Image: "base:1", Args: []string{"true"}})
	defer m.Remove(meta, true)
	st.Remove("base:1")
	st.Prune(context.Background())
	os.RemoveAll(st.LayersDir())
	if _, err := commit.Commit(context.Background(), st, Committable{Name: meta.Name}, commit.Options{}); err == nil || !strings.Contains(err.Error(), "base:1") {
		t.Errorf("image removed: %v", err)
	}
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Log(err)
	}
}
