package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"snap/internal/fixtures"
	"snap/internal/registrytest"
)

// bigRegistry is the data the registry benchmarks share: a snap store
// holding the busybox base (base:1) and, on it, one layer of 256 random
// 4 MiB files (big:1, 1 GiB that gzip cannot shrink), one of 64 (mid:1,
// 256 MiB), and golden:1 (big:1) with golden:2 (one small layer on top);
// big:1 in dockerd too; and a registry on loopback.
type bigRegistry struct {
	root   string // the snap store
	reg    *registrytest.Registry
	docker string // big:1 in dockerd
}

// snap runs snap on the benchmark's store.
func (r *bigRegistry) snap(args string) string {
	return fmt.Sprintf("%s --root %s %s", snapBin, r.root, args)
}

// wipe empties the registry: it stops, loses its storage and starts again
// on the same port, so every push finds nothing there.
func (r *bigRegistry) wipe(b *testing.B) {
	b.Helper()
	r.reg.Stop()
	storage := filepath.Join(r.reg.Dir, "storage")
	if err := os.RemoveAll(storage); err != nil {
		b.Fatal(err)
	}
	if err := os.Mkdir(storage, 0o755); err != nil {
		b.Fatal(err)
	}
	r.reg.Restart(b)
}

// toDocker loads big:1 into dockerd.
func (r *bigRegistry) toDocker(b *testing.B) {
	b.Helper()
	sh(b, fmt.Sprintf("%s | %s load -q", r.snap("save "+r.docker), docker()))
}

func newBigRegistry(b *testing.B) *bigRegistry {
	b.Helper()
	setup(b)
	for _, t := range []string{"skopeo", "docker-registry"} {
		if _, err := exec.LookPath(t); err != nil {
			b.Fatalf("%s is needed here and must be installed: %v", t, err)
		}
	}
	w := b.TempDir()
	r := &bigRegistry{root: filepath.Join(w, "store"), docker: "snap-bench/registry-big:1"}
	base := filepath.Join(w, "base")
	if err := fixtures.Base(base); err != nil {
		b.Fatal(err)
	}
	sh(b, r.snap(fmt.Sprintf("import %s base:1", base)))
	rootfs := func(name string, files int) string {
		dir := filepath.Join(w, name)
		if err := fixtures.Base(dir); err != nil {
			b.Fatal(err)
		}
		randomFiles(b, filepath.Join(dir, "data"), files/16, 16, func(int) int { return 4 << 20 })
		return dir
	}
	mid := rootfs("mid", 64)
	sh(b, r.snap(fmt.Sprintf("commit --base base:1 dir://%s mid:1", mid)))
	os.RemoveAll(mid)
	big := rootfs("big", 256)
	sh(b, r.snap(fmt.Sprintf("commit --base base:1 dir://%s big:1", big)))
	sh(b, r.snap("tag big:1 golden:1"))
	if err := os.WriteFile(filepath.Join(big, "etc", "golden"), []byte("2\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	sh(b, r.snap(fmt.Sprintf("commit --base golden:1 dir://%s golden:2", big)))
	os.RemoveAll(big)
	for img, layers := range map[string]int{"big:1": 2, "mid:1": 2, "golden:2": 3} {
		if n := strings.Count(sh(b, r.snap("inspect --format '{{json .RootFS.Layers}}' "+img)), "sha256:"); n != layers {
			b.Fatalf("%s has %d layers, want %d", img, n, layers)
		}
	}
	// The name in dockerd is the one snap saves with, and is this
	// benchmark's own.
	sh(b, r.snap("tag big:1 "+r.docker))
	b.Cleanup(func() { fixtures.Docker("rmi", r.docker) })
	r.toDocker(b)
	r.reg = registrytest.Start(b, registrytest.Options{})
	return r
}

// BenchmarkRegistry1GiB256Files pushes and pulls an image of 1 GiB in 256
// random files through a docker-registry on loopback: snap against docker
// and skopeo, each side's copy freed (registry emptied, image removed)
// untimed between runs; then the push of golden:2 on top of golden:1, and
// snap push's peak memory.
func BenchmarkRegistry1GiB256Files(b *testing.B) {
	r := newBigRegistry(b)
	host := r.reg.Host
	for b.Loop() {
		b.Run("push", func(b *testing.B) { benchPush(b, r, host) })
		b.Run("pull", func(b *testing.B) { benchPull(b, r, host) })
		b.Run("golden2", func(b *testing.B) { benchGolden2(b, r, host) })
		b.Run("rss", func(b *testing.B) { benchPushRSS(b, r, host) })
	}
}

// benchPush races the pushes of big:1 into an empty registry. Its 1 GiB is
// one blob, so one upload stream: the registry hashes it as it writes it
// (about 3.6 CPU seconds here, most in sha256), and snap and skopeo both
// spend nearly all their time waiting on that; docker compresses on top.
func benchPush(b *testing.B, r *bigRegistry, host string) {
	dockerRef := host + "/bench/docker:1"
	sh(b, fmt.Sprintf("%s tag %s %s", docker(), r.docker, dockerRef))
	defer fixtures.Docker("rmi", dockerRef)
	wipe := func() { r.wipe(b) }
	med := race(b, []tool{
		{name: "snap push", cmd: r.snap(fmt.Sprintf("push -q big:1 %s/bench/snap:1", host)), afterFn: wipe},
		{name: "docker push", cmd: fmt.Sprintf("%s push %s", docker(), dockerRef), afterFn: wipe},
		{name: "skopeo copy", cmd: fmt.Sprintf("skopeo copy -q --dest-tls-verify=false oci:%s:big:1 docker://%s/bench/skopeo:1", r.root, host), afterFn: wipe},
	})
	report(b, med, "snap push", "docker push", 0.5)
	report(b, med, "snap push", "skopeo copy", 0.8)
}

func benchPull(b *testing.B, r *bigRegistry, host string) {
	ref := host + "/bench/pull:1"
	sh(b, r.snap(fmt.Sprintf("push -q big:1 %s", ref)))
	// dockerd must not hold big:1's layers, or its pull would find them.
	sh(b, fmt.Sprintf("%s rmi %s", docker(), r.docker))
	defer r.toDocker(b)
	w := b.TempDir()
	med := race(b, []tool{
		{name: "snap pull", cmd: fmt.Sprintf("%s --root %s/store pull -q %s", snapBin, w, ref), after: "rm -rf " + w + "/store"},
		{name: "docker pull", cmd: fmt.Sprintf("%s pull -q %s", docker(), ref), after: fmt.Sprintf("%s rmi %s", docker(), ref)},
	})
	report(b, med, "snap pull", "docker pull", 0.6)
}

// benchGolden2 times the push of golden:2 to the repository golden:1 is in
// (the registry then holds golden:1 alone) and counts what it sent from
// the registry's access log.
func benchGolden2(b *testing.B, r *bigRegistry, host string) {
	r.wipe(b)
	repo := host + "/bench/golden"
	// mark is where the registry's log stands after golden:1's push: the
	// lines after it are golden:2's.
	mark := 0
	pushGolden1 := func() {
		sh(b, r.snap(fmt.Sprintf("push -q golden:1 %s:1", repo)))
		r.reg.Requests("GET", "^$") // waits for the log to hold the push
		mark = len(r.reg.Log())
	}
	pushGolden1()
	var (
		sent     []upload
		manifest int64
	)
	med := race(b, []tool{{
		name: "snap push golden:2",
		cmd:  r.snap(fmt.Sprintf("push -q golden:2 %s:2", repo)),
		afterFn: func() {
			sent = uploads(b, r.reg.Log()[mark:])
			manifest = manifestSize(b, r.reg, "bench/golden", "2")
			r.wipe(b)
			pushGolden1()
		},
	}})
	reportTime(b, "snap push golden:2", med["snap push golden:2"], 0.1)
	var total int64
	var parts []string
	for _, u := range sent {
		size := blobSize(b, r.root, u.digest)
		total += size
		parts = append(parts, fmt.Sprintf("%s %s %d B", u.what, u.digest[:19], size))
	}
	parts = append(parts, fmt.Sprintf("manifest %d B", manifest))
	total += manifest
	fmt.Printf("%-28s %-24s %7d bytes in %d blob uploads and the manifest: %s\n", b.Name(), "sent by golden:2 push", total, len(sent), strings.Join(parts, ", "))
	b.ReportMetric(float64(total), "bytes-sent")
}

// benchPushRSS runs snap push of the 1 GiB and of the 256 MiB image into
// an empty registry and reports the peak RSS of each (the median of three).
func benchPushRSS(b *testing.B, r *bigRegistry, host string) {
	peak := map[string]float64{}
	for _, img := range []string{"big:1", "mid:1"} {
		var kib []float64
		for range 3 {
			r.wipe(b)
			cmd := exec.Command(snapBin, "--root", r.root, "push", "-q", img, host+"/bench/rss:1")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%s: %v: %s", cmd, err, out)
			}
			kib = append(kib, float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss))
		}
		peak[img] = median(kib) / 1024
	}
	fmt.Printf("%-28s %-24s %7.1f MiB (1 GiB image) vs %7.1f MiB (256 MiB image)\n", b.Name(), "snap push peak RSS", peak["big:1"], peak["mid:1"])
	b.ReportMetric(peak["big:1"], "MiB-peak-RSS-1GiB")
	b.ReportMetric(peak["mid:1"], "MiB-peak-RSS-256MiB")
}

// reportTime prints an absolute time against its target, as report does
// a ratio.
func reportTime(b *testing.B, name string, secs, target float64) {
	verdict := map[bool]string{true: "MET", false: "MISSED"}[secs <= target]
	fmt.Printf("%-28s %-24s %7.3fs  (target <= %.2fs: %s)\n", b.Name(), name, secs, target, verdict)
	b.ReportMetric(secs, "s/"+strings.ReplaceAll(name, " ", "-"))
}

type upload struct{ what, digest string }

// blobUpload is the PUT that completes a blob upload, in the registry's
// access log: the digest is in its query.
var blobUpload = regexp.MustCompile(`"PUT (/v2/\S+/blobs/uploads/\S+) HTTP/[0-9.]+" 201 `)

// uploads lists the blob uploads completed in log, the registry's.
func uploads(b *testing.B, log string) []upload {
	b.Helper()
	var out []upload
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := blobUpload.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		u, err := url.ParseRequestURI(m[1])
		if err != nil {
			b.Fatalf("registry log: %v", err)
		}
		d := u.Query().Get("digest")
		if d == "" {
			b.Fatalf("registry log: an upload without a digest: %s", sc.Text())
		}
		out = append(out, upload{what: "blob", digest: d})
	}
	slices.SortFunc(out, func(a, c upload) int { return strings.Compare(a.digest, c.digest) })
	return out
}

// manifestSize is the size of the manifest the registry holds for
// repo:tag, as it answers a HEAD.
func manifestSize(b *testing.B, reg *registrytest.Registry, repo, tag string) int64 {
	b.Helper()
	req, err := http.NewRequest(http.MethodHead, reg.URL("/v2/"+repo+"/manifests/"+tag), nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := (&http.Client{Transport: reg.Transport()}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		b.Fatalf("HEAD %s: %s, Content-Length %d", req.URL, resp.Status, resp.ContentLength)
	}
	return resp.ContentLength
}

func blobSize(b *testing.B, root, d string) int64 {
	b.Helper()
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || alg != "sha256" || len(hex) != 64 {
		b.Fatalf("bad digest %q", d)
	}
	fi, err := os.Stat(filepath.Join(root, "blobs", "sha256", hex))
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}
