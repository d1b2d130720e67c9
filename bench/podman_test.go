package bench

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"snap/internal/fixtures"
	"snap/internal/podmantest"
)

// BenchmarkPodmanCommit1GiB256Files races `snap commit podman://C` with
// `podman commit C` on a private podman (its own storage and API service):
// C runs, and wrote 256 random 4 MiB files (1 GiB) itself. Both commit as a
// user types it (default compression, pausing the running container); each
// image is removed untimed after its run (podman rmi; snap rmi and prune).
func BenchmarkPodmanCommit1GiB256Files(b *testing.B) {
	setup(b)
	p := podmantest.Start(b)
	w := b.TempDir()
	store := filepath.Join(w, "store")
	snap := func(args string) string { return fmt.Sprintf("%s --root %s %s", snapBin, store, args) }

	base := filepath.Join(w, "base")
	if err := fixtures.Base(base); err != nil {
		b.Fatal(err)
	}
	sh(b, snap(fmt.Sprintf("import %s base:1", base)))
	sh(b, snap("save base:1")+" | "+p.CommandLine("load", "-q"))
	img := strings.TrimSpace(p.Must("images", "-q", "--no-trunc"))
	if img == "" || strings.Contains(img, "\n") {
		b.Fatalf("podman's images after loading the base: %q", img)
	}
	const name = "snap-bench-pod-1gib"
	p.Must(append(append([]string{"run", "-d", "--name", name}, podmantest.RunFlags...), img, "sleep", "1000000")...)
	p.Must("exec", name, "sh", "-c",
		"for d in $(seq -w 0 15); do mkdir -p /data/d0$d; for i in $(seq -w 0 15); do head -c 4194304 /dev/urandom > /data/d0$d/f000$i; done; done")
	// What both commit: the 256 files, nothing lost to a wrong container.
	if n := strings.Count(sh(b, snap("diff -H "+p.Sock+" podman://"+name)), "A /data/d0"); n != 256+16 {
		b.Fatalf("snap diff podman://%s lists %d added files and dirs under /data, want 272", name, n)
	}
	sh(b, snap("commit -H "+p.Sock+" podman://"+name+" snap-bench/pod:0")) // exports the base once, as any first commit would

	for b.Loop() {
		med := race(b, []tool{
			{name: "snap commit podman://", cmd: snap("commit -H " + p.Sock + " podman://" + name + " snap-bench/pod:1"),
				after: snap("rmi snap-bench/pod:1") + " >/dev/null && " + snap("prune") + " >/dev/null"},
			{name: "podman commit", cmd: p.CommandLine("commit", name, "localhost/snap-bench/pod:1"),
				after: p.CommandLine("rmi", "localhost/snap-bench/pod:1")},
		})
		report(b, med, "snap commit podman://", "podman commit", 0.2)
	}
}
