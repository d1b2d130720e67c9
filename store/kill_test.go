package store_test

import (
	"bytes"
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	units "github.com/docker/go-units"

	"snap/cli"
	"snap/internal/testenv"
	"snap/store"
)

const asSnap = "SNAP_STORE_TEST_AS_SNAP"

// TestMain makes the test binary snap itself when asked, so the tests can
// run real snap processes (and SIGKILL them) without building one.
func TestMain(m *testing.M) {
	if os.Getenv(asSnap) == "1" {
		os.Exit(cli.Run(context.Background(), os.Args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func snapCmd(root string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"--root", root}, args...)...)
	cmd.Env = append(os.Environ(), asSnap+"=1")
	return cmd
}

func snapRun(t *testing.T, root string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := snapCmd(root, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("snap %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// tempEntries lists what writers have in flight, each entry with the bytes
// of its files: everything in ingest/, and every .tmp-* entry of the layout
// (where temp files lived before ingest/ existed).
func tempEntries(root string) map[string]int64 {
	out := map[string]int64{}
	for _, dir := range []string{"ingest", "blobs/sha256", "layers", "."} {
		ents, _ := os.ReadDir(filepath.Join(root, dir))
		for _, e := range ents {
			if dir != "ingest" && !strings.HasPrefix(e.Name(), ".tmp-") {
				continue
			}
			rel := filepath.Join(dir, e.Name())
			out[rel] = 0
			filepath.WalkDir(filepath.Join(root, rel), func(_ string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if info, err := d.Info(); err == nil {
						out[rel] += info.Size()
					}
				}
				return nil
			})
		}
	}
	return out
}

func tempBytes(root string) (n int64, names []string) {
	for name, size := range tempEntries(root) {
		n += size
		names = append(names, name)
	}
	return n, names
}

// killWhen starts snap with args, waits until ready says the write is
// under way, and SIGKILLs it. It reports false if snap finished first.
func killWhen(t *testing.T, root string, ready func() bool, args ...string) bool {
	t.Helper()
	cmd := snapCmd(root, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("snap %s: %v: %s", strings.Join(args, " "), err, stderr.String())
			}
			return false
		default:
		}
		if ready() {
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newTemp returns a check for a temp entry that is not there now, whose
// path contains kind, with at least min bytes in it.
func newTemp(root, kind string, min int64) func() bool {
	old := tempEntries(root)
	return func() bool {
		for name, size := range tempEntries(root) {
			if _, ok := old[name]; !ok && strings.Contains(name, kind) && size >= min {
				return true
			}
		}
		return false
	}
}

// Real snap commits SIGKILLed in the middle of writing their layer blob,
// and one in the middle of unpacking its base's layer, leave temp files;
// the next `snap prune` frees all of them at once, reports exactly their
// size, and the store works on. Before, prune kept temp blobs for an hour
// (15 SIGKILLs left 3.2 GB) and never looked at half-unpacked layers.
func TestPruneFreesKilledCommits(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	big := t.TempDir()
	// Incompressible, so that gzip takes long enough to be killed in.
	rng := rand.NewChaCha8([32]byte{8})
	for _, name := range []string{"a", "b"} {
		b := make([]byte, 16<<20)
		rng.Read(b)
		if err := os.WriteFile(filepath.Join(big, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	small := t.TempDir()
	if err := os.WriteFile(filepath.Join(small, "f"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	snapRun(t, root, "commit", "dir://"+big, "big:1")

	for range 3 {
		if !killWhen(t, root, newTemp(root, "blob", 1<<20), "commit", "dir://"+big, "killed:1") {
			t.Fatal("a 32 MiB gzip commit finished before its blob reached 1 MiB")
		}
	}
	// The unpack is fast: try until one is caught half way.
	testenv.Root(t, "commit --base (unpacks layers with their owners)")
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup("big:1")
	if err != nil {
		t.Fatal(err)
	}
	unpacked := filepath.Join(root, "layers", img.Config.RootFS.DiffIDs[0].Encoded())
	caught := false
	for range 10 {
		os.RemoveAll(unpacked)
		if caught = killWhen(t, root, newTemp(root, "layer", 1<<20), "commit", "--base", "big:1", "dir://"+small, "killed:2"); caught {
			break
		}
	}
	if !caught {
		t.Fatal("no unpack of a 32 MiB layer was caught half way in 10 tries")
	}

	want, left := tempBytes(root)
	if want < 4<<20 || len(left) < 4 {
		t.Fatalf("the killed commits left %d bytes in %v; want at least 4 MiB in 4 temp entries", want, left)
	}
	t.Logf("4 SIGKILLs left %d bytes in %d temp entries", want, len(left))
	out := snapRun(t, root, "prune")
	if wantOut := "Total reclaimed space: " + units.HumanSize(float64(want)) + "\n"; out != wantOut {
		t.Errorf("prune printed %q, want %q", out, wantOut)
	}
	if n, left := tempBytes(root); n != 0 || len(left) != 0 {
		t.Errorf("after prune: %d bytes left in %v", n, left)
	}

	// The store works on: the kept image, a new commit on it, its history.
	if out := snapRun(t, root, "images"); !strings.Contains(out, "big ") || strings.Contains(out, "killed") {
		t.Errorf("images after the kills:\n%s", out)
	}
	snapRun(t, root, "commit", "--base", "big:1", "dir://"+small, "after:1")
	if out := snapRun(t, root, "history", "after:1"); strings.Count(out, "\n") != 3 {
		t.Errorf("history after:1:\n%s", out)
	}
	if out := snapRun(t, root, "prune"); out != "Total reclaimed space: 0B\n" {
		t.Errorf("a second prune: %q", out)
	}
}
