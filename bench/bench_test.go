// Package bench times snap against the tools it replaces, on the same data in
// the same run: `docker commit`, `umoci repack`, and GNU tar as the floor.
// Runs alternate tool by tool and the medians are compared, so a machine
// that slows down slows both. `make bench` runs it; nothing here asserts a time.
package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snap/internal/fixtures"
)

// runs per tool: this VM's first touches of freshly freed memory make single
// runs swing by 2x either way, so the median needs a few of them.
const runs = 7

var snapBin = func() string { p, _ := filepath.Abs("../bin/snap"); return p }()

func setup(b *testing.B) {
	b.Helper()
	if _, err := os.Stat(snapBin); err != nil {
		b.Fatalf("%s: %v (make build first; make bench does)", snapBin, err)
	}
	if err := fixtures.DockerAvailable(); err != nil {
		b.Fatalf("dockerd is the reference and must run: %v", err)
	}
	if err := fixtures.EnsureBaseImage(); err != nil {
		b.Fatal(err)
	}
}

func sh(b *testing.B, cmd string) string {
	b.Helper()
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return string(out)
}

// timed runs cmd and returns its wall time in seconds.
func timed(b *testing.B, cmd string) float64 {
	b.Helper()
	start := time.Now()
	sh(b, cmd)
	return time.Since(start).Seconds()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// tool is one command timed in the alternation; after and then afterFn, if
// set, run untimed.
type tool struct {
	name    string
	cmd     string
	after   string
	afterFn func()
}

// race times each tool once per round, round after round, and returns the
// medians by name. One untimed warm-up round fills the page cache for all.
// Each tool's output is removed untimed after its run, as docker's image is
// (rmi): the root filesystem is mounted with discard, so freeing a GiB costs
// whoever frees it a second or more, and it must not be charged to one side.
// Tools write real files (snap and tar their tar, docker its layer dir):
// none of them fsyncs, so none is charged for the disk.
func race(b *testing.B, tools []tool) map[string]float64 {
	b.Helper()
	times := map[string][]float64{}
	for round := 0; round <= runs; round++ {
		// Shuffle the order each round (the same shuffles every run): the run
		// right after a GiB was freed is measurably slower here, and no tool
		// should always be the one that follows it.
		order := rand.New(rand.NewPCG(uint64(round), 7)).Perm(len(tools))
		for _, k := range order {
			t := tools[k]
			s := timed(b, t.cmd)
			if t.after != "" {
				sh(b, t.after)
			}
			if t.afterFn != nil {
				t.afterFn()
			}
			// Every tool writes its output to the page cache; flushing it
			// between runs keeps one tool's dirty pages from throttling the
			// next one's writes.
			sh(b, "sync")
			if round > 0 {
				times[t.name] = append(times[t.name], s)
			}
		}
	}
	med := map[string]float64{}
	for n, ts := range times {
		med[n] = median(ts)
	}
	return med
}

// report prints one line per ratio and records it as a benchmark metric.
func report(b *testing.B, med map[string]float64, num, den string, target float64) {
	ratio := med[num] / med[den]
	verdict := "no target"
	if target > 0 {
		verdict = fmt.Sprintf("target <= %.2f: %s", target, map[bool]string{true: "MET", false: "MISSED"}[ratio <= target])
	}
	fmt.Printf("%-28s %-24s %7.3fs / %-22s %7.3fs = %6.3f  (%s)\n", b.Name(), num, med[num], den, med[den], ratio, verdict)
	unit := strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(num + "/" + den)
	b.ReportMetric(ratio, unit)
}

// container runs an empty container from image and fills its upper dir from
// the host with fill (the upper is what docker commit reads; writing it
// directly is what a write through the overlay mount does).
func container(b *testing.B, name, image, script string, fill func(upper string)) fixtures.Container {
	b.Helper()
	c, err := fixtures.RunContainer(name, image, script)
	if err != nil {
		b.Fatal(err)
	}
	if fill != nil {
		fill(c.Upper)
	}
	return c
}

func randomFiles(b *testing.B, dir string, dirs, perDir int, size func(i int) int) {
	b.Helper()
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	for d := range dirs {
		p := filepath.Join(dir, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(p, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range perDir {
			buf := make([]byte, size(i))
			rng.Read(buf)
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("f%05d", i)), buf, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func docker() string { return fixtures.DockerBinary() }

// snapVsDocker races snap layer --upper (none and zstd), docker commit and tar.
func snapVsDocker(b *testing.B, c fixtures.Container, zstd bool) map[string]float64 {
	w := b.TempDir()
	tools := []tool{
		{name: "snap layer", cmd: fmt.Sprintf("%s layer --upper %s -o %s/l.tar", snapBin, c.Upper, w), after: "rm " + w + "/l.tar"},
		{name: "docker commit", cmd: fmt.Sprintf("%s commit %s snap-bench/tmp:1", docker(), c.Name), after: docker() + " rmi snap-bench/tmp:1"},
		{name: "tar (floor)", cmd: fmt.Sprintf("tar -C %s -cf %s/t.tar .", c.Upper, w), after: "rm " + w + "/t.tar"},
	}
	if zstd {
		tools = append(tools, tool{name: "snap layer zstd", cmd: fmt.Sprintf("%s layer --upper %s --compression zstd -o %s/l.tar.zst", snapBin, c.Upper, w), after: "rm " + w + "/l.tar.zst"})
	}
	return race(b, tools)
}

func BenchmarkUpper1GiB256Files(b *testing.B) {
	setup(b)
	c := container(b, "snap-bench-1gib", fixtures.BaseImage, "true", func(u string) {
		randomFiles(b, filepath.Join(u, "data"), 16, 16, func(int) int { return 4 << 20 })
	})
	defer c.Remove()
	for b.Loop() {
		med := snapVsDocker(b, c, true)
		report(b, med, "snap layer", "docker commit", 0.33)
		report(b, med, "snap layer zstd", "docker commit", 0.45)
		report(b, med, "snap layer", "tar (floor)", 0)
	}
}

func BenchmarkUpper20kFiles(b *testing.B) {
	setup(b)
	c := container(b, "snap-bench-20k", fixtures.BaseImage, "true", func(u string) {
		randomFiles(b, filepath.Join(u, "data"), 100, 200, func(i int) int { return 1024 + i*15 })
	})
	defer c.Remove()
	for b.Loop() {
		med := snapVsDocker(b, c, false)
		report(b, med, "snap layer", "docker commit", 0.08)
		report(b, med, "snap layer", "tar (floor)", 0)
	}
}

const image100k = "snap-bench/100k:1"

// ensure100k builds (once; the tag is kept) an image whose top layer holds
// 100,000 small files.
func ensure100k(b *testing.B) {
	b.Helper()
	if _, err := fixtures.Docker("image", "inspect", image100k); err == nil {
		return
	}
	c := container(b, "snap-bench-100k-build", fixtures.BaseImage, "true", func(u string) {
		randomFiles(b, filepath.Join(u, "data"), 200, 500, func(i int) int { return 64 + i%512 })
	})
	defer c.Remove()
	if _, err := fixtures.Docker("commit", c.Name, image100k); err != nil {
		b.Fatal(err)
	}
}

const oneChange = "echo changed > /data/d005/f00005"

func BenchmarkOverlayOneChangeOn100kImage(b *testing.B) {
	setup(b)
	ensure100k(b)
	c := container(b, "snap-bench-100k-one", image100k, oneChange, nil)
	defer c.Remove()
	for b.Loop() {
		med := snapVsDocker(b, c, false)
		report(b, med, "snap layer", "docker commit", 0.25)
	}
}

// BenchmarkRootfsOneChangeOn100kFiles compares snap's rootfs mode with
// umoci repack of the same bundle: umoci unpacks the 100k image, one file
// changes, and umoci re-hashes every file to find it while snap compares
// metadata with the image's layer dirs. umoci repack does not refresh the
// bundle's mtree, so every timed repack finds the same one change.
func BenchmarkRootfsOneChangeOn100kFiles(b *testing.B) {
	setup(b)
	ensure100k(b)
	for _, t := range []string{"umoci", "skopeo"} {
		if _, err := exec.LookPath(t); err != nil {
			b.Fatalf("%s is the reference here and must be installed: %v", t, err)
		}
	}
	w := b.TempDir()
	sh(b, fmt.Sprintf("skopeo copy -q docker-daemon:%s oci:%s/oci:base", image100k, w))
	sh(b, fmt.Sprintf("umoci unpack --image %s/oci:base %s/bundle >/dev/null", w, w))
	sh(b, fmt.Sprintf("echo changed > %s/bundle/rootfs/data/d005/f00005", w))
	img, err := fixtures.Docker("image", "inspect", "--format", "{{.GraphDriver.Data.UpperDir}}:{{.GraphDriver.Data.LowerDir}}", image100k)
	if err != nil {
		b.Fatal(err)
	}
	lowers := ""
	for _, l := range strings.Split(strings.TrimSpace(img), ":") {
		if l != "" {
			lowers += " --lower " + l
		}
	}
	rootfs := w + "/bundle/rootfs"
	if got := strings.TrimSpace(sh(b, fmt.Sprintf("%s diff --rootfs %s %s", snapBin, rootfs, lowers))); got != "C /data\nC /data/d005\nC /data/d005/f00005" {
		b.Fatalf("snap diff of the bundle against the image layers:\n%s", got)
	}
	n := 0
	for b.Loop() {
		med := race(b, []tool{
			{name: "snap layer --rootfs", cmd: fmt.Sprintf("%s layer --rootfs %s %s -o %s/l.tar", snapBin, rootfs, lowers, w), after: "rm " + w + "/l.tar"},
			{name: "umoci repack", cmd: fmt.Sprintf("n=$(date +%%s%%N); umoci repack --image %s/oci:r$n %s/bundle", w, w)},
		})
		n++
		report(b, med, "snap layer --rootfs", "umoci repack", 0.05)
	}
}

// BenchmarkRunRmTrue races container start-up and tear-down: `snap run --rm
// IMG true` against `docker run --rm IMG true` on the same busybox image, each
// with its default confinement (capabilities, seccomp, masked paths).
func BenchmarkRunRmTrue(b *testing.B) {
	setup(b)
	root := b.TempDir()
	sh(b, fmt.Sprintf("%s save %s | %s --root %s load", docker(), fixtures.BaseImage, snapBin, root))
	sh(b, fmt.Sprintf("%s --root %s run --rm %s true", snapBin, root, fixtures.BaseImage)) // unpacks the layers once
	med := race(b, []tool{
		{name: "snap run --rm", cmd: fmt.Sprintf("%s --root %s run --rm %s true", snapBin, root, fixtures.BaseImage)},
		{name: "docker run --rm", cmd: fmt.Sprintf("%s run --rm --network none %s true", docker(), fixtures.BaseImage)},
	})
	report(b, med, "snap run --rm", "docker run --rm", 0.35)
}
