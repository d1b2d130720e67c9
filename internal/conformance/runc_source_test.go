package conformance

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snap/internal/testenv"
	"snap/store"
)

// runcBundle writes a bundle whose process runs script in rootfs.
func runcBundle(t *testing.T, dir, rootfs, script string) {
	t.Helper()
	cmd(t, "runc", "spec", "--bundle", dir)
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	json.Unmarshal(raw, &spec)
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", script}
	spec["root"] = map[string]any{"path": rootfs, "readonly": false}
	linux := spec["linux"].(map[string]any)
	var ns []any
	for _, n := range linux["namespaces"].([]any) {
		if n.(map[string]any)["type"] != "network" {
			ns = append(ns, n)
		}
	}
	linux["namespaces"] = ns
	out, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func runcStatus(t *testing.T, runcRoot, id string) string {
	out, err := exec.Command("runc", "--root", runcRoot, "state", id).Output()
	if err != nil {
		return "gone"
	}
	var st struct{ Status string }
	json.Unmarshal(out, &st)
	return st.Status
}

// TestCommitRuncContainer runs busybox under Debian's runc on an overlay of
// the store's own layers, as a runtime would, and commits it with runc://
// while it runs: the base is found from the lowers, the command becomes
// created_by, the container is running afterwards. A second container on a
// plain directory rootfs is committed in rootfs mode against --base.
func TestCommitRuncContainer(t *testing.T) {
	testenv.Tool(t, "runc") // the reference here (Debian's runc)
	root, base := golden(t)
	_ = base
	w := t.TempDir()
	runcRoot := filepath.Join(w, "runc-state")
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup("snap-e2e/golden:1")
	if err != nil {
		t.Fatal(err)
	}
	layers, err := st.LayerDirs(img) // as a runtime prepares a rootfs from the store
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(w, "bundle")
	for _, d := range []string{"upper", "work", "rootfs"} {
		os.MkdirAll(filepath.Join(bundle, d), 0o755)
	}
	sh(t, "mount -t overlay overlay -o lowerdir="+strings.Join(layers, ":")+",upperdir="+bundle+"/upper,workdir="+bundle+"/work "+bundle+"/rootfs")
	defer exec.Command("umount", bundle+"/rootfs").Run()
	script := "echo from-runc > /etc/motd; mkdir -p /srv; echo s > /srv/s; exec sleep 1000"
	runcBundle(t, bundle, "rootfs", script)
	runDetached(t, runcRoot, bundle, "snap-rc1")
	defer exec.Command("runc", "--root", runcRoot, "delete", "-f", "snap-rc1").Run()
	for i := 0; i < 50 && !fileHas(bundle+"/upper/srv/s", "s\n"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	mustSnap(t, root, "commit", "--runc-root", runcRoot, "-m", "from runc", "runc://snap-rc1", "snap-e2e/fromrunc:1")
	if st := runcStatus(t, runcRoot, "snap-rc1"); st != "running" {
		t.Fatalf("runc container after commit: %s", st)
	}
	h := mustSnap(t, root, "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "snap-e2e/fromrunc:1")
	if !strings.HasPrefix(h, "sh -c "+script+"|from runc\n") || !strings.Contains(h, "golden v1") || !strings.Contains(h, "Imported from") {
		t.Errorf("history:\n%s", h)
	}
	out := filepath.Join(w, "x.tar")
	mustSnap(t, root, "save", "-o", out, "snap-e2e/fromrunc:1")

	// A runc container on a plain directory: rootfs mode against --base.
	plain := filepath.Join(w, "plain")
	sh(t, "mkdir -p "+plain+" && cp -a "+base+" "+plain+"/rootfs")
	runcBundle(t, plain, "rootfs", "rm /etc/passwd; exec sleep 1000")
	runDetached(t, runcRoot, plain, "snap-rc2")
	defer exec.Command("runc", "--root", runcRoot, "delete", "-f", "snap-rc2").Run()
	time.Sleep(300 * time.Millisecond)
	if _, errs, code := snapCLI(t, root, "commit", "--runc-root", runcRoot, "runc://snap-rc2", "x:1"); code != 1 || !strings.Contains(errs, "--base") {
		t.Errorf("plain rootfs without --base: exit %d %q", code, errs)
	}
	if _, errs, code := snapCLI(t, root, "commit", "--runc-root", runcRoot, "runc://snap-nosuch", "x:1"); code != 1 || !strings.Contains(errs, `no runc container "snap-nosuch"`) {
		t.Errorf("a runc container that does not exist: exit %d %q", code, errs)
	}
	mustSnap(t, root, "commit", "--runc-root", runcRoot, "--base", "snap-e2e/golden:1", "runc://snap-rc2", "snap-e2e/plain:1")
	if st := runcStatus(t, runcRoot, "snap-rc2"); st != "running" {
		t.Fatalf("second runc container after commit: %s", st)
	}
	if _, errs, code := snapCLI(t, root, "commit", "--runc-root", runcRoot, "runc://no-such-id", "x:1"); code != 1 || !strings.Contains(errs, "no-such-id") {
		t.Errorf("unknown runc id: exit %d %q", code, errs)
	}
}

// runDetached starts a runc container in the background. Its stdio goes to
// a file: a detached container keeps a pipe open forever.
func runDetached(t *testing.T, runcRoot, bundle, id string) {
	t.Helper()
	log, err := os.Create(filepath.Join(bundle, "stdio.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	run := exec.Command("runc", "--root", runcRoot, "run", "-d", "--bundle", bundle, id)
	run.Stdout, run.Stderr = log, log
	if err := run.Run(); err != nil {
		b, _ := os.ReadFile(log.Name())
		t.Fatalf("runc run: %v: %s", err, b)
	}
}

func fileHas(p, want string) bool {
	b, err := os.ReadFile(p)
	return err == nil && string(b) == want
}
