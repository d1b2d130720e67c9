package conformance

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	archive "github.com/moby/go-archive"

	"snap/internal/fixtures"
	"snap/internal/testenv"
	"snap/store"
)

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) == 1 && l[0] == "" {
		return nil
	}
	slices.Sort(l)
	return l
}

// TestDiffRootfsLikeDocker: snap diff of a root filesystem in a directory
// (dir://, a runc container on a plain rootfs, and the rootfs mode of
// docker's vfs, btrfs, zfs and devicemapper drivers) lists what docker
// diff lists for such a container: go-archive's ChangesDirs, the naive
// differ those drivers use, run here on the same two trees.
func TestDiffRootfsLikeDocker(t *testing.T) {
	requireDocker(t)
	root := filepath.Join(t.TempDir(), "store")
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			c := runScenario(t, "snap-diffrootfs-", sc)
			rootfs := rootfsOf(t, c).Root
			parent := t.TempDir()
			for _, l := range slices.Backward(c.ImageLowers()) {
				sh(t, "cp -a "+l+"/. "+parent+"/")
			}
			changes, err := archive.ChangesDirs(rootfs, parent)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, ch := range changes {
				want = append(want, ch.String())
			}
			slices.Sort(want)
			base := strings.TrimSpace(cmd(t, fixtures.DockerBinary(), "inspect", "-f", "{{.Image}}", c.Name))
			if sc.name == scenarios[0].name {
				mustSnap(t, root, "commit", "docker://"+c.Name, "diffrootfs/base:1") // brings the base into the store
			}
			got := sortedLines(mustSnap(t, root, "diff", "--base", base, "dir://"+rootfs))
			if !slices.Equal(got, want) {
				t.Errorf("snap diff dir://\n%s\ndocker's ChangesDirs:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestDiffAndSquashRuncContainer: snap diff runc://ID lists a runc
// container's changes while it runs, on an overlay (as docker diff would:
// the merged view) and on a plain rootfs against --base; either squashes
// to the tree its commit unpacks to.
func TestDiffAndSquashRuncContainer(t *testing.T) {
	testenv.Tool(t, "runc")
	root, base := golden(t)
	w := t.TempDir()
	runcRoot := filepath.Join(w, "runc-state")
	bundle := filepath.Join(w, "bundle")
	for _, d := range []string{"upper", "work", "rootfs"} {
		if err := os.MkdirAll(filepath.Join(bundle, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lowers := storeLayers(t, root, "snap-e2e/golden:1")
	sh(t, "mount -t overlay overlay -o lowerdir="+strings.Join(lowers, ":")+",upperdir="+bundle+"/upper,workdir="+bundle+"/work "+bundle+"/rootfs")
	defer sh(t, "umount "+bundle+"/rootfs")
	runcBundle(t, bundle, "rootfs", "echo changed > /etc/motd; rm -rf /opt/app; mkdir -p /srv; echo s > /srv/s; exec sleep 1000")
	runDetached(t, runcRoot, bundle, "snap-diff-rc1")
	defer sh(t, "runc --root "+runcRoot+" delete -f snap-diff-rc1")
	waitFile(t, bundle+"/upper/srv/s", "s\n")
	want := []string{"A /srv", "A /srv/s", "C /etc", "C /etc/motd", "C /opt", "D /opt/app"}
	if got := sortedLines(mustSnap(t, root, "diff", "--runc-root", runcRoot, "runc://snap-diff-rc1")); !slices.Equal(got, want) {
		t.Errorf("snap diff runc:// (overlay)\n got %q\nwant %q", got, want)
	}
	squashEqualsLayers(t, root, "runc://snap-diff-rc1", "runc-overlay", "--runc-root", runcRoot)

	plain := filepath.Join(w, "plain")
	sh(t, "mkdir -p "+plain+" && cp -a "+base+" "+plain+"/rootfs")
	runcBundle(t, plain, "rootfs", "rm /etc/passwd; echo p > /etc/p; exec sleep 1000")
	runDetached(t, runcRoot, plain, "snap-diff-rc2")
	defer sh(t, "runc --root "+runcRoot+" delete -f snap-diff-rc2")
	waitFile(t, plain+"/rootfs/etc/p", "p\n")
	want = []string{"A /etc/p", "C /etc", "D /etc/passwd"}
	if got := sortedLines(mustSnap(t, root, "diff", "--runc-root", runcRoot, "--base", "snap-e2e/golden:1", "runc://snap-diff-rc2")); !slices.Equal(got, want) {
		t.Errorf("snap diff runc:// (plain rootfs)\n got %q\nwant %q", got, want)
	}
	squashEqualsLayers(t, root, "runc://snap-diff-rc2", "runc-plain", "--runc-root", runcRoot, "--base", "snap-e2e/golden:1")
}

func waitFile(t *testing.T, p, body string) {
	t.Helper()
	for range 250 {
		if fileHas(p, body) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never held %q", p, body)
}

func storeLayers(t *testing.T, root, ref string) []string {
	t.Helper()
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup(ref)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := st.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}
