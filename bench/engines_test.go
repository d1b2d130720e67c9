package bench

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"snap/internal/containerdtest"
	"snap/internal/dockertest"
	"snap/internal/fixtures"
)

// fill1GiB writes the benchmarks' 1 GiB from inside a running container:
// 256 files of 4 MiB from /dev/urandom in /data, so the engine's own write
// path (a vfs dir, a btrfs subvolume, an overlay upper) holds them.
const fill1GiB = `mkdir -p /data && i=0 && while [ $i -lt 256 ]; do head -c 4194304 /dev/urandom > /data/f$i || exit 1; i=$((i+1)); done`

// idle is what the benchmarks' containers run: they keep running, so each
// commit pauses and resumes them, snap's and the engine's alike.
var idle = []string{"sleep", "1000000"}

// snapStore is a snap store the benchmarks commit into, holding the base
// image before every timed commit: template is filled once, and fresh
// replaces the store by a copy of it, untimed, so each commit writes its
// layer into a store that has only the base, as the first commit of a
// container would.
type snapStore struct {
	root, template string
}

func newSnapStore(b *testing.B, loadBase string) *snapStore {
	b.Helper()
	w := b.TempDir()
	s := &snapStore{root: filepath.Join(w, "store"), template: filepath.Join(w, "template")}
	if loadBase != "" {
		sh(b, fmt.Sprintf("%s | %s --root %s load >/dev/null", loadBase, snapBin, s.template))
	}
	s.fresh(b)
	return s
}

func (s *snapStore) fresh(b *testing.B) {
	b.Helper()
	sh(b, fmt.Sprintf("rm -rf %s && if [ -d %s ]; then cp -a %s %s; fi", s.root, s.template, s.template, s.root))
}

// commit is the snap commit command of src into the store, with env set.
func (s *snapStore) commit(env, src string) string {
	return fmt.Sprintf("%s %s --root %s commit %s snap-bench/engines:1", env, snapBin, s.root, src)
}

// BenchmarkDrivers1GiB256Files races `snap commit docker://C` with `docker
// commit C` on a private dockerd on vfs, then on btrfs, for a running
// container that wrote 1 GiB in 256 random files. Each side's image is
// freed untimed: docker's by rmi (and, on btrfs, the deleted subvolumes'
// cleanup waited for), snap's by a fresh store holding only the base.
// Both sides are CPU-bound here: snap spends about 3 CPU seconds, most of
// them in two sha256 passes (the diffID, the gzip blob) and in pgzip
// finding random data incompressible; dockerd about 5 for the same layer.
func BenchmarkDrivers1GiB256Files(b *testing.B) {
	setup(b)
	for _, driver := range []string{"vfs", "btrfs"} {
		b.Run(driver, func(b *testing.B) {
			d := dockertest.Start(b, dockertest.Options{Driver: driver, BtrfsSize: 8 << 30})
			name := "snap-bench-drv-" + driver
			d.Must(b, append([]string{"run", "-d", "--name", name, "--network", "none", fixtures.BaseImage}, idle...)...)
			d.Must(b, "exec", name, "sh", "-c", fill1GiB)
			s := newSnapStore(b, fmt.Sprintf("%s -H %s save %s", docker(), d.Host, fixtures.BaseImage))
			freeDocker := fmt.Sprintf("%s -H %s rmi snap-bench/docker:1", docker(), d.Host)
			if driver == "btrfs" {
				// docker deletes a subvolume without waiting for btrfs to
				// free its extents; the cleaner would run into the next
				// timed commit.
				freeDocker += " && btrfs subvolume sync " + d.DataRoot
			}
			for b.Loop() {
				med := race(b, []tool{
					{name: "snap commit", cmd: s.commit("DOCKER_HOST="+d.Host, "docker://"+name), afterFn: func() { s.fresh(b) }},
					{name: "docker commit", cmd: fmt.Sprintf("%s -H %s commit %s snap-bench/docker:1", docker(), d.Host, name), after: freeDocker},
				})
				report(b, med, "snap commit", "docker commit", 0.5)
			}
		})
	}
}

// BenchmarkContainerd1GiB256Files races `snap commit containerd://NS/ID` of
// a running task on a private containerd (overlayfs snapshotter) with
// `snap commit docker://C` of a running overlay2 container of the machine's
// dockerd, each having written the same 1 GiB in 256 random files: the
// containerd source should cost what the overlay2 one does.
func BenchmarkContainerd1GiB256Files(b *testing.B) {
	setup(b)
	d := containerdtest.Start(b)
	ar := filepath.Join(b.TempDir(), "base.tar")
	sh(b, fmt.Sprintf("%s save -o %s %s", docker(), ar, fixtures.BaseImage))
	image := d.Import(b, "default", ar)[0]
	const id = "snap-bench-ctd"
	d.Run(b, "default", image, id, nil, idle...)
	d.MustCtr(b, "-n", "default", "task", "exec", "--exec-id", "fill", id, "sh", "-c", fill1GiB)

	name := "snap-bench-ctd-overlay2"
	fixtures.Docker("rm", "-f", name)
	if _, err := fixtures.Docker(append([]string{"run", "-d", "--name", name, "--network", "none", fixtures.BaseImage}, idle...)...); err != nil {
		b.Fatal(err)
	}
	defer fixtures.Docker("rm", "-f", name)
	if _, err := fixtures.Docker("exec", name, "sh", "-c", fill1GiB); err != nil {
		b.Fatal(err)
	}
	// Both stores start with the base, as each source brings it in: from
	// dockerd's save for docker://, from containerd's content store for
	// containerd:// (a first commit brings it; its image is then dropped).
	ov := newSnapStore(b, fmt.Sprintf("%s save %s", docker(), fixtures.BaseImage))
	ctd := newSnapStore(b, "")
	env := "CONTAINERD_ADDRESS=" + d.Address
	sh(b, ctd.commit(env, "containerd://default/"+id))
	sh(b, fmt.Sprintf("%s --root %s rmi snap-bench/engines:1 && %s --root %s prune >/dev/null && cp -a %s %s", snapBin, ctd.root, snapBin, ctd.root, ctd.root, ctd.template))
	if got := strings.TrimSpace(sh(b, fmt.Sprintf("%s --root %s images -q | wc -l", snapBin, ctd.template))); got != "1" {
		b.Fatalf("the containerd store template holds %s images, want the base only", got)
	}
	for b.Loop() {
		med := race(b, []tool{
			{name: "snap containerd://", cmd: ctd.commit(env, "containerd://default/"+id), afterFn: func() { ctd.fresh(b) }},
			{name: "snap docker:// overlay2", cmd: ov.commit("", "docker://"+name), afterFn: func() { ov.fresh(b) }},
		})
		report(b, med, "snap containerd://", "snap docker:// overlay2", 1.2)
	}
}
