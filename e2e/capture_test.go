package e2e

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moby/go-archive/compression"
	"snap/internal/fixtures"
	"snap/internal/registrytest"
	"snap/store"
)

// layerEntries lists every entry of every layer of a snap image, bottom
// layer first: what anyone who pulls the image can read, whiteouts or not.
func (e *env) layerEntries(t *testing.T, ref string) []*tar.Header {
	t.Helper()
	st, err := store.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup(ref)
	if err != nil {
		t.Fatal(err)
	}
	var all []*tar.Header
	for _, l := range img.Manifest.Layers {
		rc, err := st.OpenBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := compression.DecompressStream(rc)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(dec)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, h)
		}
		dec.Close()
		rc.Close()
	}
	return all
}

// captureBase is base:1 with what a used machine has lying around, for
// generalize to clean: a machine ID, a host key, a log, a package cache.
func (e *env) captureBase(t *testing.T) {
	rootfs := e.rootfs("used-rootfs")
	for name, body := range map[string]string{
		"etc/machine-id":                   "0123456789abcdef0123456789abcdef\n",
		"etc/ssh/ssh_host_ed25519_key":     "base host key\n",
		"var/log/base.log":                 "base log line\n",
		"var/cache/apt/archives/old_1.deb": "a package\n",
		"var/tmp/base-scratch":             "scratch\n",
		"root/.ash_history":                "cat /etc/shadow\n",
		"etc/keep.conf":                    "kept\n",
	} {
		p := filepath.Join(rootfs, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.must("commit", "--base", "base:1", "dir://"+rootfs, "used:1")
}

const captureFile = `# the golden web image
base: used:1
network: host
vars:
  version: "1"
steps:
  - copy: {src: files/motd, dst: /etc/motd, owner: "0:0", mode: "0644"}
  - run: mkdir -p /opt/app && wget -q -O /opt/app/run.sh ${URL}/app.sh && chmod 755 /opt/app/run.sh && echo ran-download
  - run: >-
      mkdir -p /var/cache/junk /etc/ssh && echo junk > /var/cache/junk/x &&
      echo step key > /etc/ssh/ssh_host_rsa_key && echo secret > /root/.ash_history &&
      echo step log > /var/log/step.log && echo hi > /tmp/scratch && echo ran-mess
  - env: MODE=golden
  - run: echo "LAST" > /etc/golden-version && echo ran-last
exclude:
  - /var/cache/junk/**
  - {path: /etc/base-secret, whiteout: true}
generalize: true
version: "${version}.0"
verify:
  - run: test "$(cat /etc/motd)" = "golden v1" && test "$MODE" = golden && /opt/app/run.sh
commit:
  author: Ops <ops@example.com>
  message: golden web
  changes: ['CMD ["/opt/app/run.sh"]']
  labels: {team: ops}
tags:
  - "golden/web:{{.Date}}"
  - golden/web:latest
push:
  - REGISTRY/golden/web
`

// TestCapture is issue 13's capture end to end: copy, a run downloading
// from a loopback HTTP server, exclude, generalize, verify, tags, push to a
// real registry, docker pulling and running the result; the no-op second
// run, a changed last step re-running alone, the drift, and a failing
// verify leaving no tag.
func TestCapture(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/app.sh" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "#!/bin/sh\necho app v1\n")
	}))
	defer srv.Close()
	e.captureBase(t)
	dir := filepath.Join(e.dir, "golden")
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "motd"), []byte("golden v1\n"), 0o600)
	file := strings.NewReplacer("${URL}", srv.URL, "REGISTRY", reg.Host).Replace(captureFile)
	cf := filepath.Join(dir, "capture.yaml")
	if err := os.WriteFile(cf, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}

	out, errs, code := e.snap("capture", "-f", cf)
	if code != 0 {
		t.Fatalf("capture: exit %d:\n%s", code, errs)
	}
	id := strings.TrimSpace(out)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("capture printed %q on stdout, want the image ID alone", out)
	}
	for _, want := range []string{"\nran-download\n", "\nran-mess\n", "\nran-last\n", "Tagged : golden/web:"} {
		if !strings.Contains(errs, want) {
			t.Errorf("capture's output lacks %q:\n%s", want, errs)
		}
	}

	// Nothing excluded or generalized is in any layer; logs and the
	// machine ID are there, empty.
	entries := e.layerEntries(t, "golden/web:latest")
	for _, h := range entries {
		name := strings.TrimPrefix(h.Name, "./")
		for _, never := range []string{"var/cache/junk/x", "etc/ssh/ssh_host_rsa_key", "tmp/scratch"} {
			if name == never {
				t.Errorf("a layer carries %s", never)
			}
		}
		if name == "var/log/step.log" && h.Size != 0 {
			t.Errorf("the step's log is in a layer with %d bytes", h.Size)
		}
	}
	// In the image as it runs: generalized, with what the steps made.
	show := e.must("run", "--rm", "golden/web:latest", "sh", "-c",
		`cat /etc/motd; /opt/app/run.sh; wc -c < /etc/machine-id; wc -c < /var/log/base.log; wc -c < /var/log/step.log;
		 ls /etc/ssh /tmp /var/tmp /var/cache/apt/archives /root /var/cache/junk 2>&1; cat /etc/keep.conf; echo $MODE;
		 if test -e /etc/base-secret; then echo the base secret is there; fi`)
	want := "golden v1\napp v1\n0\n0\n0\n/etc/ssh:\n/root:\n/tmp:\n/var/cache/apt/archives:\n/var/cache/junk:\n/var/tmp:\nkept\ngolden\n"
	if got := normalizeLs(show); got != want {
		t.Errorf("the captured image shows\n%s\nwant\n%s", got, want)
	}
	// Provenance.
	var inspected []struct {
		Annotations map[string]string
		Config      struct{ Labels map[string]string }
	}
	json.Unmarshal([]byte(e.must("inspect", "golden/web:latest")), &inspected)
	if len(inspected) != 1 || inspected[0].Annotations["org.opencontainers.image.base.name"] != "used:1" ||
		inspected[0].Annotations["org.opencontainers.image.version"] != "1.0" || inspected[0].Config.Labels["team"] != "ops" ||
		inspected[0].Annotations["org.opencontainers.image.created"] == "" ||
		!strings.HasPrefix(inspected[0].Annotations["org.opencontainers.image.base.digest"], "sha256:") ||
		inspected[0].Annotations["org.opencontainers.image.authors"] != "Ops <ops@example.com>" ||
		!strings.HasPrefix(inspected[0].Annotations["dev.snap.capture.file.digest"], "sha256:") {
		t.Errorf("snap inspect shows annotations %v", inspected)
	}

	// The author is on the capture's own last entry, not on the steps'
	// (cached across captures whose author may change).
	if st, err := store.Open(e.root); err == nil {
		img, err := st.Lookup("golden/web:latest")
		if err != nil {
			t.Fatal(err)
		}
		h := img.Config.History
		if last := h[len(h)-1]; last.Author != "Ops <ops@example.com>" || last.Comment != "golden web" || img.Config.Author != "Ops <ops@example.com>" {
			t.Errorf("the last history entry: %+v, config author %q", last, img.Config.Author)
		}
		for _, e := range h[1 : len(h)-1] {
			if e.Author != "" {
				t.Errorf("a step's history entry has an author: %+v", e)
			}
		}
	}

	// docker pulls what was pushed and runs it.
	if exec.Command("docker", "version").Run() == nil {
		ref := reg.Ref("golden/web:latest")
		t.Cleanup(func() { exec.Command("docker", "rmi", "-f", ref).Run() })
		if out, err := exec.Command("docker", "pull", ref).CombinedOutput(); err != nil {
			t.Fatalf("docker pull: %v: %s", err, out)
		}
		if out, err := exec.Command("docker", "run", "--rm", ref).CombinedOutput(); err != nil || string(out) != "app v1\n" {
			t.Errorf("docker run of the capture: %v: %q", err, out)
		}
	} else {
		require(t, false, "a running dockerd")
	}

	// Nothing changed: nothing made (the index byte for byte as it was,
	// no step run), the same ID. How fast is make bench's business (0.013 s
	// there); the time is logged here.
	index := filepath.Join(e.root, "index.json")
	before, _ := os.ReadFile(index)
	start := time.Now()
	out, errs, code = e.snap("capture", "-f", cf)
	t.Logf("the unchanged capture took %v", time.Since(start))
	after, _ := os.ReadFile(index)
	if code != 0 || strings.TrimSpace(out) != id || !strings.Contains(errs, "Unchanged") || regexp.MustCompile(`(?m)^ran-`).MatchString(errs) {
		t.Errorf("second capture: exit %d, %q, stderr:\n%s", code, out, errs)
	}
	if string(before) != string(after) {
		t.Errorf("the unchanged capture changed index.json")
	}

	// The last step changed: only it runs again; the drift names it.
	e.must("tag", "golden/web:latest", "golden/web:v1")
	os.WriteFile(cf, []byte(strings.Replace(file, `"LAST"`, `"LAST v2"`, 1)), 0o644)
	out, errs, code = e.snap("capture", "-f", cf)
	if code != 0 || strings.TrimSpace(out) == id {
		t.Fatalf("third capture: exit %d, %q (the first gave %s):\n%s", code, out, id, errs)
	}
	ran := func(step string) bool { return regexp.MustCompile(`(?m)^` + step + `$`).MatchString(errs) }
	if ran("ran-download") || ran("ran-mess") || !ran("ran-last") {
		t.Errorf("changing the last step ran:\n%s", errs)
	}
	if n := strings.Count(errs, "Using cache"); n < 4 {
		t.Errorf("%d steps from the cache, want 4 (copy, run, run, env):\n%s", n, errs)
	}
	if !strings.Contains(errs, "C /etc/golden-version") {
		t.Errorf("the capture's drift lacks the changed file:\n%s", errs)
	}
	diffOut := e.must("diff", "golden/web:v1", "golden/web:latest")
	if !regexp.MustCompile(`(?m)^C /etc/golden-version`).MatchString(diffOut) {
		t.Errorf("snap diff v1 latest:\n%s", diffOut)
	}
	driftLines := regexp.MustCompile(`(?m)^[ACD] /.*$`).FindAllString(errs, -1)
	for _, never := range []string{"junk", "ssh_host", "ash_history", "scratch", "step.log"} {
		if strings.Contains(diffOut, never) || strings.Contains(strings.Join(driftLines, "\n"), never) {
			t.Errorf("the drift mentions %s:\n%s\n%s", never, diffOut, strings.Join(driftLines, "\n"))
		}
	}
}

// normalizeLs drops ls's blank lines, so that empty directories read as
// their headers alone.
func normalizeLs(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// TestCaptureReproducibleAndVerify: with SOURCE_DATE_EPOCH a capture run
// again from nothing (no cache) gives the same image ID; a failing verify
// shows its output, exits 1 and tags nothing.
func TestCaptureReproducibleAndVerify(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "c")
	os.MkdirAll(filepath.Join(dir, "files", "conf"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "conf", "a.conf"), []byte("a\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "capture.yaml"), []byte(`base: base:1
steps:
  - copy: {src: files/conf, dst: /etc/app/}
  - run: echo built > /built && mkdir -p /var/log && date > /var/log/build.log
  - workdir: /etc/app
  - user: user
generalize: true
tags: [repro:1]
`), 0o644)
	// A capture without SOURCE_DATE_EPOCH first fills the step cache; its
	// step images (times of now) must not serve the captures with it.
	e.must("capture", "-f", filepath.Join(dir, "capture.yaml"))
	e.vars = append(e.vars, "SOURCE_DATE_EPOCH=1700000000")
	id1 := e.must("capture", "-f", filepath.Join(dir, "capture.yaml"))
	id2 := e.must("capture", "-f", filepath.Join(dir, "capture.yaml"), "--no-cache")
	if id1 != id2 {
		t.Errorf("SOURCE_DATE_EPOCH: %s, then %s from no cache", id1, id2)
	}
	if got := e.must("run", "--rm", "repro:1", "sh", "-c", "pwd; id -u; cat a.conf /built"); got != "/etc/app\n1000\na\nbuilt\n" {
		t.Errorf("repro:1 runs as %q", got)
	}

	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(`base: base:1
steps:
  - run: echo hello > /hello
verify:
  - run: cat /hello
  - run: echo "the check failed loudly" >&2; exit 3
tags: [bad:1]
`), 0o644)
	_, errs, code := e.snap("capture", "-f", filepath.Join(dir, "bad.yaml"))
	if code != 1 || !strings.Contains(errs, "the check failed loudly") {
		t.Errorf("failing verify: exit %d:\n%s", code, errs)
	}
	if lines := strings.Split(strings.TrimSpace(errs), "\n"); !strings.HasPrefix(lines[len(lines)-1], "snap: ") {
		t.Errorf("failing verify: the last line is not snap's one error line:\n%s", errs)
	}
	if _, _, code := e.snap("inspect", "bad:1"); code == 0 {
		t.Errorf("a failed verify tagged bad:1")
	}
}

// TestCaptureDockerContainerBase captures a running docker container as it
// is (base: docker://NAME), paused for the walk and running after, with a
// step on top; the result keeps what the container wrote and carries the
// container's name as its base.
func TestCaptureDockerContainerBase(t *testing.T) {
	e := newEnv(t)
	requireDocker(t)
	name := "snap-capture-base-" + filepath.Base(e.dir)
	fixtures.Docker("rm", "-f", name)
	if _, err := fixtures.Docker("run", "-d", "--name", name, "--network", "none", fixtures.BaseImage, "sh", "-c",
		`echo provisioned by hand > /etc/provisioned; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fixtures.Docker("rm", "-f", name) })
	dir := filepath.Join(e.dir, "c")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "capture.yaml"), []byte(`base: docker://`+name+`
steps:
  - run: echo captured > /etc/captured
generalize: true
tags: [from-docker:1]
`), 0o644)
	time.Sleep(300 * time.Millisecond)
	e.must("capture", "-f", filepath.Join(dir, "capture.yaml"))
	if got := e.must("run", "--rm", "from-docker:1", "sh", "-c", "cat /etc/provisioned /etc/captured; ls -A /tmp"); got != "provisioned by hand\ncaptured\n" {
		t.Errorf("from-docker:1 shows %q (generalize empties /tmp)", got)
	}
	var inspected []struct{ Annotations map[string]string }
	json.Unmarshal([]byte(e.must("inspect", "from-docker:1")), &inspected)
	if len(inspected) != 1 || inspected[0].Annotations["org.opencontainers.image.base.name"] != "docker://"+name {
		t.Errorf("base annotation: %v", inspected)
	}
	// Still running, and not paused.
	c1, _ := fixtures.Docker("exec", name, "cat", "/tmp/count")
	time.Sleep(500 * time.Millisecond)
	c2, _ := fixtures.Docker("exec", name, "cat", "/tmp/count")
	if strings.TrimSpace(c1) == strings.TrimSpace(c2) {
		t.Errorf("the docker container stopped counting after the capture (%q, %q)", c1, c2)
	}
}

// TestCaptureOnATerminal runs a capture as a person would, in tmux: the
// steps' lines, then docker's per-layer lines for the push (each layer on
// one line, ending Pushed or already there), then the image ID.
func TestCaptureOnATerminal(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	dir := filepath.Join(e.dir, "c")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "capture.yaml"), []byte(`base: base:1
steps:
  - run: dd if=/dev/urandom of=/blob bs=1M count=24 2>/dev/null && echo made the blob
tags: [term:1]
push: [`+reg.Ref("term/app")+`]
`), 0o644)
	x := newTmux(t, e, 120, 40)
	x.keys("snap capture -f c/capture.yaml; echo D''ONE")
	x.waitFor(`(?m)^DONE$`)
	screen := x.screen()
	for _, want := range []string{"Step 1/1 : RUN dd", "made the blob", "Tagged : term:1", "Push : " + reg.Ref("term/app:1")} {
		if !strings.Contains(screen, want) {
			t.Errorf("the screen lacks %q:\n%s", want, screen)
		}
	}
	layers := regexp.MustCompile(`(?m)^([0-9a-f]{12}): (.*)$`).FindAllStringSubmatch(screen, -1)
	seen := map[string]int{}
	for _, l := range layers {
		seen[l[1]]++
		if st := strings.TrimSpace(l[2]); st != "Pushed" && st != "Layer already exists" {
			t.Errorf("layer %s ends %q:\n%s", l[1], l[2], screen)
		}
	}
	if len(seen) != 2 { // the base's layer and the step's
		t.Errorf("%d layer lines, want 2:\n%s", len(seen), screen)
	}
	if !regexp.MustCompile(`(?m)^sha256:[0-9a-f]{64}\s*\nDONE$`).MatchString(screen) {
		t.Errorf("the image ID is not the last line before DONE:\n%s", screen)
	}
}

// TestCaptureReviewFixes: a capture that skipped its pushes is not
// "unchanged" for the next one, which pushes; a squash of steps that change
// no file gives a valid image (as many layered history entries as layers);
// the drift names the tag that held the previous image.
func TestCaptureReviewFixes(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	dir := filepath.Join(e.dir, "c")
	os.MkdirAll(dir, 0o755)
	cf := filepath.Join(dir, "capture.yaml")
	os.WriteFile(cf, []byte(`base: base:1
steps:
  - run: echo ${n} > /n
tags: ["rf:${n}", rf:latest]
push: [`+reg.Ref("rf/app")+`]
vars: {n: "1"}
`), 0o644)
	e.must("capture", "-f", cf, "--no-push")
	_, errs, code := e.snap("capture", "-f", cf)
	if code != 0 || strings.Contains(errs, "Unchanged") || !strings.Contains(errs, "Push : "+reg.Ref("rf/app:latest")) {
		t.Errorf("the capture after --no-push: exit %d:\n%s", code, errs)
	}
	_, errs, code = e.snap("capture", "-f", cf, "-e", "n=2", "--no-push")
	if code != 0 || !strings.Contains(errs, "Drift from rf:latest (") {
		t.Errorf("a capture with a new tag: exit %d, the drift should come from rf:latest:\n%s", code, errs)
	}

	os.WriteFile(filepath.Join(dir, "sq.yaml"), []byte(`base: base:1
steps:
  - env: A=1
  - user: user
commit: {squash: true}
tags: [sq:env]
`), 0o644)
	e.must("capture", "-f", filepath.Join(dir, "sq.yaml"))
	st, err := store.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup("sq:env")
	if err != nil {
		t.Fatal(err)
	}
	layered := 0
	for _, h := range img.Config.History {
		if !h.EmptyLayer {
			layered++
		}
	}
	if layered != len(img.Config.RootFS.DiffIDs) || len(img.Manifest.Layers) != len(img.Config.RootFS.DiffIDs) {
		t.Errorf("squash of env steps: %d layered history entries, %d diff_ids, %d layers", layered, len(img.Config.RootFS.DiffIDs), len(img.Manifest.Layers))
	}
	if got := e.must("run", "--rm", "sq:env", "sh", "-c", "echo $A; id -u"); got != "1\n1000\n" {
		t.Errorf("sq:env runs as %q", got)
	}
}
