package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

func mountsUnder(t *testing.T, root string) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

// TestDetachedExitIsRecorded: a detached container that exits by itself,
// with no caller waiting, has its exit code and finish time recorded and its
// rootfs unmounted by its monitor; Stop and Remove leave no mount either.
func TestDetachedExitIsRecorded(t *testing.T) {
	st, m := setup(t)
	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "det", Args: []string{"sh", "-c", "echo out; exit 9"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		now, err := m.Get("det")
		if err != nil {
			t.Fatal(err)
		}
		if now.ExitCode != nil && !m.alive(now) {
			if *now.ExitCode != 9 || now.Finished.IsZero() {
				t.Errorf("recorded exit %d at %v, want 9 and a time", *now.ExitCode, now.Finished)
			}
			if s := m.Status(now); !strings.HasPrefix(s, "Exited (9) ") {
				t.Errorf("status %q", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exit recorded; status %q", m.Status(now))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The monitor unmounts before it drops the state, and the state is gone.
	if ms := mountsUnder(t, st.Root()); len(ms) > 0 {
		t.Errorf("still mounted after the exit: %v", ms)
	}
	if b, _ := os.ReadFile(m.Log(meta)); string(b) != "out\n" {
		t.Errorf("log %q", b)
	}

	if _, err := m.Start(context.Background(), meta, Stdio{}, true); err != nil {
		t.Fatal(err) // started again after its exit
	}
	long, err := m.Create(CreateOptions{Image: "base:1", Name: "long", Args: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(long, true)
	if _, err := m.Start(context.Background(), long, Stdio{}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(context.Background(), long, Stdio{}, true); !errors.Is(err, ErrRunning) {
		t.Errorf("second start: %v, want ErrRunning", err)
	}
	if ms := mountsUnder(t, st.Root()); len(ms) == 0 {
		t.Error("a running container has no rootfs mounted")
	}
	if err := m.Stop(long, 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(meta, true); err != nil {
		t.Fatal(err)
	}
	if ms := mountsUnder(t, st.Root()); len(ms) > 0 {
		t.Errorf("still mounted after Stop and Remove: %v", ms)
	}
	if _, err := os.Stat(filepath.Join(st.Root(), "containers", meta.ID)); !os.IsNotExist(err) {
		t.Errorf("removed container's dir: %v", err)
	}
}

func TestCreateRefusesBadNames(t *testing.T) {
	st, m := setup(t)
	for _, name := range []string{"bad/name", "new\nline", "a", "-x", "x y", "é1", "//x"} {
		if _, err := m.Create(CreateOptions{Image: "base:1", Name: name, Args: []string{"true"}}); !errors.Is(err, ErrInvalidName) {
			t.Errorf("name %q: %v, want ErrInvalidName", name, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(st.Root(), "containers")); len(ents) != 0 {
		t.Errorf("created: %v", ents)
	}
	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "/ok-1", Args: []string{"true"}})
	if err != nil || meta.Name != "ok-1" {
		t.Fatalf("name /ok-1: %v %+v", err, meta)
	}
}

// TestRemoveImageInUse: RemoveImage refuses what docker rmi refuses, and
// with force only untags, keeping the image for its containers.
func TestRemoveImageInUse(t *testing.T) {
	st, m := setup(t)
	img, err := st.Lookup("base:1")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := m.Create(CreateOptions{Image: "base:1", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		force bool
	}{{"base:1", false}, {img.ID.String(), false}, {img.ID.Encoded()[:12], false}} {
		_, err := m.RemoveImage(tc.name, tc.force)
		var ce *ImageConflictError
		if !errors.Is(err, ErrImageInUse) || !errors.As(err, &ce) || ce.Container != meta.ID {
			t.Errorf("rmi %s: %v, want a conflict naming the container", tc.name, err)
		}
	}
	if err := st.Tag("base:1", "other:1"); err != nil {
		t.Fatal(err)
	}
	if done, err := m.RemoveImage("other:1", false); err != nil || len(done) != 1 {
		t.Errorf("a second name goes without force: %v %v", done, err)
	}
	done, err := m.RemoveImage(img.ID.String(), true)
	if err != nil || strings.Join(done, ",") != "Untagged: base:1" {
		t.Fatalf("rmi -f by ID: %v %v", done, err)
	}
	if _, err := m.RemoveImage(img.ID.String(), true); !errors.Is(err, ErrImageInUse) {
		t.Errorf("rmi -f of the untagged image: %v, want a conflict", err)
	}
	if _, err := st.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Lookup(img.ID.String()); err != nil {
		t.Errorf("the untagged image is gone: %v", err)
	}
	if err := m.Remove(meta, false); err != nil {
		t.Fatal(err)
	}
	if done, err := m.RemoveImage(img.ID.String(), false); err != nil || len(done) != 1 || !strings.HasPrefix(done[0], "Deleted: ") {
		t.Errorf("unused: %v %v", done, err)
	}
}
