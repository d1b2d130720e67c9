package e2e

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"snap/internal/registrytest"
)

// uploadsRE matches a blob upload's last request: the PUT that commits it
// (go-containerregistry's pushes, and docker's, end each blob with one).
const uploadsRE = `^/v2/.+/blobs/uploads/`

// registryEnv is a store (base:1) with its own docker config, so logins
// never touch the machine's.
func registryEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.vars = append(e.vars, "DOCKER_CONFIG="+filepath.Join(e.dir, "docker-config"))
	return e
}

// rootfs unpacks base:1's files into a directory for dir:// commits.
func (e *env) rootfs(name string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xzf", baseTar, "-C", dir).CombinedOutput(); err != nil {
		e.t.Fatalf("untar base: %v: %s", err, out)
	}
	return dir
}

// writeRandom writes size random bytes to path (gzip cannot shrink them).
func writeRandom(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
}

// oneLine fails the test unless stderr is one "snap: ..." line holding
// every want.
func oneLine(t *testing.T, what, stderr string, want ...string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "snap: ") {
		t.Errorf("%s: stderr is not one snap: line: %q", what, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("%s: stderr %q does not say %q", what, stderr, w)
		}
	}
}

// TestRegistryWithOtherClients pushes with snap to the real registry and
// reads the result with docker, skopeo and go-containerregistry's
// validator; pulls what docker pushed; sends only what is missing, and
// mounts across repositories.
func TestRegistryWithOtherClients(t *testing.T) {
	e := registryEnv(t)
	require(t, exec.Command("docker", "version").Run() == nil, "a running dockerd")
	skopeo := registrytestTool(t, "skopeo")
	reg := registrytest.Start(t, registrytest.Options{})

	rootfs := e.rootfs("rootfs")
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("golden v1\n"), 0o644)
	e.must("commit", "--base", "base:1", "dir://"+rootfs, "golden:1", "-c", `CMD ["cat", "/etc/motd"]`)
	ref1 := reg.Ref("team/golden:1")
	out := e.must("push", "golden:1", ref1)
	m := regexp.MustCompile(`(?m)^1: digest: (sha256:[0-9a-f]{64}) size: \d+$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("push printed %q", out)
	}
	digest1 := m[1]

	// docker pulls and runs it.
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", ref1).Run() })
	if out, err := exec.Command("docker", "pull", ref1).CombinedOutput(); err != nil {
		t.Fatalf("docker pull: %v: %s", err, out)
	}
	if out, err := exec.Command("docker", "run", "--rm", ref1).CombinedOutput(); err != nil || string(out) != "golden v1\n" {
		t.Errorf("docker run of snap's push: %v: %q", err, out)
	}
	// skopeo sees the same manifest.
	sk, err := exec.Command(skopeo, "inspect", "--tls-verify=false", "docker://"+ref1).Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var inspected struct{ Digest string }
	json.Unmarshal(sk, &inspected)
	if inspected.Digest != digest1 {
		t.Errorf("skopeo inspect: digest %s, snap pushed %s", inspected.Digest, digest1)
	}
	// What `crane validate --remote` runs: every blob fetched and checked.
	r, _ := name.ParseReference(ref1, name.Insecure)
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("go-containerregistry's validator: %v", err)
	}

	// golden:2 is golden:1 and one small layer: that layer and the config
	// go up, nothing else.
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("golden v2\n"), 0o644)
	e.must("commit", "--base", "golden:1", "dir://"+rootfs, "golden:2")
	before := reg.Requests("PUT", uploadsRE)
	e.must("push", "golden:2", reg.Ref("team/golden:2"))
	if n := reg.Requests("PUT", uploadsRE) - before; n != 2 {
		t.Errorf("golden:2 after golden:1: %d blobs uploaded, want 2 (its new layer and its config)", n)
	}
	// Pushing again sends nothing.
	before = reg.Requests("PUT", uploadsRE)
	e.must("push", "golden:2", reg.Ref("team/golden:2"))
	if n := reg.Requests("PUT", uploadsRE) - before; n != 0 {
		t.Errorf("the same push again uploaded %d blobs", n)
	}
	// Another repository of the registry: the layers are mounted.
	before = reg.Requests("PUT", uploadsRE)
	mounts := reg.Requests("POST", `^/v2/other/golden/blobs/uploads/$`)
	out = e.must("push", "golden:2", reg.Ref("other/golden:2"))
	if strings.Contains(out, "Mounted") || !strings.HasPrefix(out, "The push refers to repository [") {
		t.Errorf("piped push printed %q: want docker's message lines, no progress", out)
	}
	if n := reg.Requests("PUT", uploadsRE) - before; n > 1 {
		t.Errorf("push to another repository uploaded %d blobs, want the config at most", n)
	}
	if !strings.Contains(reg.Log(), "mount=sha256") || reg.Requests("POST", `^/v2/other/golden/blobs/uploads/$`) == mounts {
		t.Errorf("push to another repository mounted nothing")
	}

	// snap pulls into an empty store and runs it.
	e2 := registryEnv(t)
	out = e2.must("pull", reg.Ref("team/golden:2"))
	if !strings.HasSuffix(out, reg.Ref("team/golden:2")+"\n") || strings.Contains(out, "Downloading") {
		t.Errorf("piped pull printed %q: want docker's message lines, no progress", out)
	}
	if got := e2.must("run", "--rm", reg.Ref("team/golden:2")); got != "golden v2\n" {
		t.Errorf("run of the pulled image: %q", got)
	}
	if h1, h2 := e.must("history", "--no-trunc", "golden:2"), e2.must("history", "--no-trunc", reg.Ref("team/golden:2")); h1 != h2 {
		t.Errorf("history after the round trip:\n%s\nwant\n%s", h2, h1)
	}

	// What docker pushes, snap pulls and runs.
	dref := reg.Ref("docker/base:1")
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", dref).Run() })
	if out, err := exec.Command("docker", "import", baseTar, dref).CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v: %s", err, out)
	}
	if out, err := exec.Command("docker", "push", dref).CombinedOutput(); err != nil {
		t.Fatalf("docker push: %v: %s", err, out)
	}
	e2.must("pull", "-q", dref)
	if got := e2.must("run", "--rm", dref, "echo", "from docker"); got != "from docker\n" {
		t.Errorf("run of docker's push: %q", got)
	}

	// run and commit --base pull what they lack; commit --push pushes.
	e3 := registryEnv(t)
	_, errs, code := e3.snap("run", "--rm", reg.Ref("team/golden:1"))
	if code != 0 || !strings.Contains(errs, "Unable to find image '"+reg.Ref("team/golden:1")+"' locally") {
		t.Errorf("run of a missing registry image: exit %d: %s", code, errs)
	}
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("golden v3\n"), 0o644)
	out, errs, code = e3.snap("commit", "--base", reg.Ref("team/golden:2"), "dir://"+rootfs, reg.Ref("team/golden:3"), "--push")
	if code != 0 || !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(out) || !strings.Contains(errs, "3: digest: sha256:") {
		t.Fatalf("commit --push: exit %d: %q %s", code, out, errs)
	}
	if got := e2.must("run", "--rm", reg.Ref("team/golden:3")); got != "golden v3\n" {
		t.Errorf("run of commit --push's image from another store: %q", got)
	}
}

// registrytestTool is testenv.Tool for this package's tests.
func registrytestTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	require(t, err == nil, name)
	return p
}

// TestRegistryMultiPlatform: snap pulls the host's image of an index that
// skopeo copied in, another with --platform, and refuses a platform the
// index lacks.
func TestRegistryMultiPlatform(t *testing.T) {
	e := registryEnv(t)
	skopeo := registrytestTool(t, "skopeo")
	reg := registrytest.Start(t, registrytest.Options{})

	// The amd64 image is busybox (it runs here); the arm64 one a random
	// layer with an arm64 config.
	e.must("save", "--format", "oci-archive", "-o", filepath.Join(e.dir, "base.tar"), "base:1")
	dir := filepath.Join(e.dir, "layout")
	os.MkdirAll(dir, 0o755)
	if out, err := exec.Command("tar", "-xf", filepath.Join(e.dir, "base.tar"), "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, _ := lp.ImageIndex()
	im, _ := ii.IndexManifest()
	amd, err := ii.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	arm, _ := random.Image(1024, 1)
	cf, _ := arm.ConfigFile()
	cf.Architecture, cf.OS = "arm64", "linux"
	arm, _ = mutate.ConfigFile(arm, cf)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	multi := filepath.Join(e.dir, "multi")
	lp2, err := layout.Write(multi, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp2.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "multi"})); err != nil {
		t.Fatal(err)
	}
	ref := reg.Ref("multi/app:1")
	if out, err := exec.Command(skopeo, "copy", "--all", "--dest-tls-verify=false", "oci:"+multi+":multi", "docker://"+ref).CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy --all: %v: %s", err, out)
	}
	if got := e.must("pull", "-q", ref); got != ref+"\n" {
		t.Errorf("pull -q printed %q", got)
	}
	if got := e.must("run", "--rm", ref, "echo", "host platform"); got != "host platform\n" {
		t.Errorf("run of the host's image: %q", got)
	}
	e2 := registryEnv(t)
	e2.must("pull", "--platform", "linux/arm64", ref)
	if arch := e2.must("inspect", "-f", "{{.Architecture}}", ref); arch != "arm64\n" {
		t.Errorf("--platform linux/arm64 pulled %q", arch)
	}
	_, errs, code := e2.snap("pull", "--platform", "linux/s390x", ref)
	if code != 1 {
		t.Errorf("a platform the index lacks: exit %d", code)
	}
	oneLine(t, "pull --platform linux/s390x", errs, "linux/s390x", ref)
}

// TestRegistryAuthAndTLS: a registry with htpasswd auth and TLS from a
// test CA. Logins are docker's (a docker login serves snap), a wrong
// password saves nothing, and TLS is verified against certs.d.
func TestRegistryAuthAndTLS(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{TLS: true, Auth: true})
	ref := reg.Ref("secure/base:1")
	certs := "--cert-dir=" + reg.CertsDir
	cfg := filepath.Join(e.dir, "docker-config", "config.json")

	_, errs, code := e.snap("push", certs, "base:1", ref)
	if code != 1 {
		t.Errorf("push without a login: exit %d", code)
	}
	oneLine(t, "push without a login", errs, reg.Host, "unauthorized")

	_, errs, code = e.snapIn(strings.NewReader("wrong\n"), "login", certs, "-u", reg.User, "--password-stdin", reg.Host)
	if code != 1 {
		t.Errorf("login with a wrong password: exit %d", code)
	}
	oneLine(t, "login with a wrong password", errs, reg.Host, "unauthorized")
	if _, err := os.Stat(cfg); err == nil {
		b, _ := os.ReadFile(cfg)
		if strings.Contains(string(b), reg.Host) {
			t.Errorf("a refused login saved credentials: %s", b)
		}
	}

	// Without the CA the certificate is not trusted; --tls-verify=false
	// goes on anyway, as docker's insecure-registries.
	_, errs, code = e.snapIn(strings.NewReader(reg.Password+"\n"), "login", "--cert-dir", t.TempDir(), "-u", reg.User, "--password-stdin", reg.Host)
	if code != 1 || !strings.Contains(errs, "certificate") {
		t.Errorf("login to an untrusted certificate: exit %d: %s", code, errs)
	}
	if out, errs, code := e.snapIn(strings.NewReader(reg.Password+"\n"), "login", certs, "-u", reg.User, "--password-stdin", reg.Host); code != 0 || out != "Login Succeeded\n" {
		t.Fatalf("login: exit %d: %q %s", code, out, errs)
	}
	if b, err := os.ReadFile(cfg); err != nil || !strings.Contains(string(b), reg.Host) {
		t.Errorf("docker config after login: %s (%v)", b, err)
	}
	e.must("push", certs, "base:1", ref)
	e2 := registryEnv(t)
	e2.vars = e.vars // the same docker config: logged in
	_, errs, code = e2.snap("pull", "--cert-dir", t.TempDir(), ref)
	if code != 1 || !strings.Contains(errs, "certificate") {
		t.Errorf("pull from an untrusted certificate: exit %d: %s", code, errs)
	}
	e2.must("pull", "--tls-verify=false", "-q", ref)
	e.must("logout", reg.Host)
	e3 := registryEnv(t)
	if _, errs, code := e3.snap("pull", certs, ref); code != 1 || !strings.Contains(errs, "unauthorized") {
		t.Errorf("pull after logout: exit %d: %s", code, errs)
	}

	// A login made by docker serves snap.
	if exec.Command("docker", "version").Run() != nil {
		require(t, false, "a running dockerd")
	}
	reg.TrustForDocker(t)
	dcfg := filepath.Join(e3.dir, "docker-config")
	login := exec.Command("docker", "--config", dcfg, "login", "-u", reg.User, "--password-stdin", reg.Host)
	login.Stdin = strings.NewReader(reg.Password)
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("docker login: %v: %s", err, out)
	}
	e3.must("pull", certs, "-q", ref)
}

// throttle is a TCP proxy to target passing at most rate bytes a second
// each way: a transfer through it lasts long enough to be cut in the
// middle.
func throttle(t *testing.T, target string, rate int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	slow := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 16<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
				time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go slow(s, c)
			go slow(c, s)
		}
	}()
	return ln.Addr().String()
}

// bigImage commits layers of n random MiB each on base:1 and returns the
// last image's name.
func (e *env) bigImage(layers, mib int) string {
	e.t.Helper()
	rootfs := e.rootfs("big")
	parent := "base:1"
	for i := range layers {
		writeRandom(e.t, filepath.Join(rootfs, fmt.Sprintf("big%d", i)), int64(mib)<<20)
		img := fmt.Sprintf("big:%d", i+1)
		e.must("commit", "--base", parent, "dir://"+rootfs, img)
		parent = img
	}
	return parent
}

// TestRegistryKilledMidPush: the registry dies mid-push: a clear error;
// once it is back, the same command sends only the blobs that had not
// arrived (counted in the registry's log).
func TestRegistryKilledMidPush(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	img := e.bigImage(4, 8) // base, 4 layers of 8 MiB, config: 6 blobs
	const blobs = 6
	proxy := throttle(t, reg.Host, 16<<20)
	ref := proxy + "/big/app:1"

	cmd := exec.Command(bin, "push", img, ref)
	cmd.Env = e.environ()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := reg.Requests("PUT", uploadsRE)
	for deadline := time.Now().Add(cmdTimeout); reg.Requests("PUT", uploadsRE) == start; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no blob arrived")
		}
	}
	reg.Kill()
	arrived := reg.Requests("PUT", uploadsRE) - start
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("push to a killed registry: %v; stderr %s", err, stderr.String())
	}
	if arrived >= blobs {
		t.Fatalf("every blob arrived before the kill (%d): the test proves nothing", arrived)
	}
	oneLine(t, "push to a killed registry", stderr.String(), "push "+ref)

	reg.Restart(t)
	before := reg.Requests("PUT", uploadsRE)
	e.must("push", img, ref)
	if sent := reg.Requests("PUT", uploadsRE) - before; sent != blobs-arrived {
		t.Errorf("the second push sent %d blobs; %d of %d had arrived, so want %d", sent, arrived, blobs, blobs-arrived)
	}
	e2 := registryEnv(t)
	e2.must("pull", "-q", ref)
	if got, want := e2.must("inspect", "-f", "{{.Id}}", ref), e.must("inspect", "-f", "{{.Id}}", img); got != want {
		t.Errorf("pulled %s, pushed %s", got, want)
	}
}

// TestPullInterrupted: Ctrl-C (SIGINT) mid-pull leaves no image and no tag;
// the next pull fetches only what had not arrived.
func TestPullInterrupted(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	img := e.bigImage(4, 8)
	ref := reg.Ref("big/app:1")
	e.must("push", img, ref)
	proxy := throttle(t, reg.Host, 16<<20)
	slowRef := proxy + "/big/app:1"

	e2 := registryEnv(t)
	index := func() string {
		b, err := os.ReadFile(filepath.Join(e2.root, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	was := index()
	cmd := exec.Command(bin, "pull", slowRef)
	cmd.Env = e2.environ()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	layerGets := `^/v2/big/app/blobs/sha256:`
	start := reg.Requests("GET", layerGets)
	for deadline := time.Now().Add(cmdTimeout); reg.Requests("GET", layerGets) < start+3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the pull fetches no layer")
		}
	}
	time.Sleep(200 * time.Millisecond) // some bytes are in flight
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("pull after SIGINT: %v, want exit 130", err)
	}
	if now := index(); now != was {
		t.Errorf("an interrupted pull changed the index:\n%s", now)
	}
	if ing, _ := os.ReadDir(filepath.Join(e2.root, "ingest")); len(ing) != 0 {
		t.Errorf("an interrupted pull left %d files in ingest/", len(ing))
	}
	out := e2.must("pull", slowRef)
	if !strings.Contains(out, "Downloaded newer image") {
		t.Errorf("the second pull printed %q", out)
	}
	if got, want := e2.must("inspect", "-f", "{{.Id}}", slowRef), e.must("inspect", "-f", "{{.Id}}", img); got != want {
		t.Errorf("pulled %s, pushed %s", got, want)
	}
}

// TestRegistryBadInput: unknown tags and repositories, malformed
// references: one line naming the thing, exit 1, the store as it was.
func TestRegistryBadInput(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	e.must("push", "base:1", reg.Ref("team/base:1"))
	index := func() string {
		b, _ := os.ReadFile(filepath.Join(e.root, "index.json"))
		return string(b)
	}
	was := index()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", reg.Ref("team/base:2")}, "team/base:2"},
		{[]string{"pull", reg.Ref("nobody/base:1")}, "nobody/base"},
		{[]string{"pull", reg.Ref("team/base@sha256:" + strings.Repeat("0", 64))}, "sha256:0000"},
		{[]string{"pull", reg.Host + "/Team/Base:1"}, "Team/Base"},
		{[]string{"pull", reg.Host + "/team/../base:1"}, "team/../base"},
		{[]string{"pull", "localhost:1/x:1"}, "localhost:1"},
		{[]string{"push", "nosuch:1", reg.Ref("team/x:1")}, "nosuch:1"},
		{[]string{"push", "base:1", reg.Ref("team/x@sha256:" + strings.Repeat("0", 64))}, "digest"},
		{[]string{"run", "--rm", reg.Ref("team/nope:1")}, "team/nope:1"},
		{[]string{"push", "base:1", "10.255.255.1:5000/x:1"}, "10.255.255.1:5000"},
	} {
		_, errs, code := e.snap(tc.args...)
		if tc.args[0] == "run" { // docker's line first, then the error
			errs = strings.TrimPrefix(errs, "Unable to find image '"+tc.args[2]+"' locally\n")
		}
		if code != 1 {
			t.Errorf("snap %q: exit %d, want 1 (%s)", tc.args, code, errs)
		}
		oneLine(t, strings.Join(tc.args, " "), errs, tc.want)
		if now := index(); now != was {
			t.Fatalf("snap %q changed the index", tc.args)
		}
	}
}

// TestPullProgressOnATerminal: per-layer progress in a tmux pane, as
// docker's: each layer on one line, ending "Pull complete".
func TestPullProgressOnATerminal(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	img := e.bigImage(3, 4)
	e.must("push", img, reg.Ref("big/app:1"))
	slowRef := throttle(t, reg.Host, 8<<20) + "/big/app:1"
	e2 := registryEnv(t)
	x := newTmux(t, e2, 120, 30)
	x.keys("snap pull " + slowRef + "; echo D''ONE")
	mid := x.waitFor(`(?m)^[0-9a-f]{12}: Downloading .*\n`)
	if !strings.Contains(mid[0], "MB") {
		t.Errorf("a downloading line without sizes: %q", mid[0])
	}
	x.waitFor(`(?m)^DONE$`)
	screen := x.screen()
	lines := regexp.MustCompile(`(?m)^([0-9a-f]{12}): (.*)$`).FindAllStringSubmatch(screen, -1)
	seen := map[string]int{}
	for _, l := range lines {
		seen[l[1]]++
		if st := strings.TrimSpace(l[2]); st != "Pull complete" && st != "Already exists" {
			t.Errorf("layer %s ends %q", l[1], l[2])
		}
	}
	if len(seen) != 4 { // base and three
		t.Errorf("%d layer lines, want 4:\n%s", len(seen), screen)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("layer %s on %d lines:\n%s", id, n, screen)
		}
	}
	for _, want := range []string{"1: Pulling from big/app", "Digest: sha256:", "Status: Downloaded newer image for " + slowRef} {
		if !strings.Contains(screen, want) {
			t.Errorf("the screen lacks %q:\n%s", want, screen)
		}
	}
}

// TestLoginCredentialHelper: credentials go where docker's config says
// (credHelpers), never into config.json; a login typed at a terminal asks
// for what is missing and echoes no password; the default certs.d
// (/etc/docker/certs.d) is read.
func TestLoginCredentialHelper(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{TLS: true, Auth: true})
	reg.TrustForDocker(t) // /etc/docker/certs.d/HOST/ca.crt: snap's default too
	bindir := filepath.Join(e.dir, "helpers")
	creds := filepath.Join(e.dir, "creds.json")
	os.MkdirAll(bindir, 0o755)
	helper := `#!/bin/sh
case "$1" in
get) read host; if [ -f "` + creds + `" ]; then cat "` + creds + `"; else echo "credentials not found in native keychain"; exit 1; fi ;;
store) cat > "` + creds + `" ;;
erase) rm -f "` + creds + `" ;;
list) echo '{}' ;;
esac
`
	if err := os.WriteFile(filepath.Join(bindir, "docker-credential-snaptest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgDir := filepath.Join(e.dir, "docker-config")
	os.MkdirAll(cfgDir, 0o700)
	cfg := `{"credHelpers": {"` + reg.Host + `": "snaptest"}}`
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.vars = append(e.vars, "PATH="+bindir+":"+filepath.Dir(bin)+":"+os.Getenv("PATH"))

	x := newTmux(t, e, 100, 20)
	x.keys("snap login " + reg.Host + "; echo login-exit=$?")
	x.waitFor(`(?m)^Username: $`)
	x.keys(reg.User)
	x.waitFor(`(?m)^Password: $`)
	x.keys(reg.Password)
	x.waitFor(`(?m)^Login Succeeded\nlogin-exit=0$`)
	if screen := x.screen(); strings.Contains(screen, reg.Password) {
		t.Errorf("the password was echoed:\n%s", screen)
	}
	b, err := os.ReadFile(creds)
	if err != nil || !strings.Contains(string(b), reg.User) {
		t.Fatalf("the helper holds %q (%v)", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json")); strings.Contains(string(b), reg.Password) || strings.Contains(string(b), `"auths": {"`+reg.Host) {
		t.Errorf("config.json got the credentials: %s", b)
	}
	ref := reg.Ref("helped/base:1")
	e.must("push", "base:1", ref) // the CA from /etc/docker/certs.d, the login from the helper
	e.must("logout", reg.Host)
	if _, err := os.Stat(creds); err == nil {
		t.Error("logout left the helper's credentials")
	}
	if _, errs, code := e.snap("pull", ref); code != 1 || !strings.Contains(errs, "unauthorized") {
		t.Errorf("pull after logout: exit %d: %s", code, errs)
	}
}
