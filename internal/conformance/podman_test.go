package conformance

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"snap/internal/fixtures"
	"snap/internal/podmantest"
)

// podman is the private podman of one test (podmantest), with the busybox
// fixture loaded.
type podman struct {
	*podmantest.Podman
	t    *testing.T
	dir  string
	sock string // unix:///...
}

var podmanRunFlags = podmantest.RunFlags

// podmanBase is the busybox fixture as podman names it after a load.
const podmanBase = "localhost/snap-fixture/busybox:1"

func startPodman(t *testing.T) *podman {
	t.Helper()
	pt := podmantest.Start(t)
	p := &podman{Podman: pt, t: t, dir: pt.Dir, sock: pt.Sock}
	dir := p.dir
	// The base, from snap's own store through `snap save` and `podman load`.
	base, store := filepath.Join(dir, "base"), filepath.Join(dir, "snapstore")
	if err := fixtures.Base(base); err != nil {
		t.Fatal(err)
	}
	mustSnap(t, store, "import", base, "snap-fixture/busybox:1")
	mustSnap(t, store, "save", "-o", filepath.Join(dir, "base.tar"), "snap-fixture/busybox:1")
	p.must("load", "-i", filepath.Join(dir, "base.tar"))
	return p
}

func (p *podman) run(args ...string) (string, error) { return p.Run(args...) }

func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *podman) inspect(name, format string) string {
	p.t.Helper()
	return strings.TrimSpace(p.must("inspect", "--format", format, name))
}

// lastLayer is the top layer of a docker-archive (podman save, snap save),
// uncompressed.
func lastLayer(t *testing.T, archive string) []byte {
	t.Helper()
	files := map[string][]byte{}
	links := map[string]string{}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeSymlink {
			links[path.Clean(h.Name)] = path.Join(path.Dir(h.Name), h.Linkname)
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[path.Clean(h.Name)] = b
	}
	var manifest []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		t.Fatalf("%s: manifest %s: %v", archive, files["manifest.json"], err)
	}
	name := path.Clean(manifest[0].Layers[len(manifest[0].Layers)-1])
	if l, ok := links[name]; ok {
		name = l
	}
	b, ok := files[name]
	if !ok {
		t.Fatalf("%s: no layer %s", archive, name)
	}
	if len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// podmanStubs are what podman itself puts into a container's layer when it
// starts it (its initInodes that can appear in an upper here): podman
// commit keeps them, snap leaves them out as docker does (its init layer)
// and as podman diff does.
var podmanStubs = []string{"etc/hostname", "etc/hosts", "etc/mtab", "run/", "run/.containerenv"}

// TestPodmanConformance: each conformance scenario run in a podman
// container, committed by `podman commit` and by snap through podman's
// compatible API (docker://, DOCKER_HOST at podman's socket): the layers
// agree entry by entry once podman's own stubs are set aside, and snap diff
// podman://NAME lists what podman diff lists.
func TestPodmanConformance(t *testing.T) {
	p := startPodman(t)
	t.Setenv("DOCKER_HOST", p.sock)
	w := t.TempDir()
	store := filepath.Join(w, "store")
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			name := "snap-pod-" + sc.name
			p.must(append(append([]string{"run", "--name", name}, podmanRunFlags...), podmanBase, "/bin/sh", "-c", sc.script)...)
			defer p.run("rm", "-f", "-t", "0", name)
			if sc.host != nil {
				// Through a short symlink: a socket's path must fit in
				// sun_path (108 bytes), podman's upper paths are long.
				short, err := os.MkdirTemp("", "sp")
				if err != nil {
					t.Fatal(err)
				}
				defer os.RemoveAll(short)
				if err := os.Symlink(p.inspect(name, "{{.GraphDriver.Data.UpperDir}}"), filepath.Join(short, "u")); err != nil {
					t.Fatal(err)
				}
				sc.host(t, filepath.Join(short, "u"))
			}
			ref := "localhost/snap-pod/" + sc.name + ":ref"
			p.must("commit", "-q", "-f", "docker", "-a", "snap tests", "-m", "reference", name, ref)
			pArchive := filepath.Join(w, sc.name+"-podman.tar")
			p.must("save", "--format", "docker-archive", "-o", pArchive, ref)
			tag := "snap-pod/" + sc.name + ":1"
			mustSnap(t, store, "commit", "--compression", "none", "-a", "snap tests", "-m", "reference", "docker://"+name, tag)
			sArchive := filepath.Join(w, sc.name+"-snap.tar")
			mustSnap(t, store, "save", "-o", sArchive, tag)

			pe := entries(t, lastLayer(t, pArchive))
			pe = slices.DeleteFunc(pe, func(e Entry) bool { return slices.Contains(podmanStubs, e.Name) })
			// /etc is in podman's layer for the stubs alone (copied up,
			// touched) unless something else in it changed: snap leaves it
			// out then, as docker's layer has no /etc for its init layer's.
			if !slices.ContainsFunc(pe, func(e Entry) bool { return strings.HasPrefix(e.Name, "etc/") && e.Name != "etc/" }) {
				pe = slices.DeleteFunc(pe, func(e Entry) bool { return e.Name == "etc/" && e.Mode == 0o755 && e.Uid == 0 && e.Gid == 0 })
			}
			layers := mustSnap(t, store, "inspect", "--format", "{{len .RootFS.Layers}}", tag)
			var se []Entry
			if strings.TrimSpace(layers) == "2" {
				se = entries(t, lastLayer(t, sArchive))
			}
			if sc.name == "nothing" {
				// podman's layer holds its stubs (and /etc, /run for them);
				// snap's commit is empty, as docker's is.
				if len(se) != 0 {
					t.Errorf("nothing changed, snap's layer has %d entries: %v", len(se), se)
				}
				return
			}
			if len(pe) == 0 {
				t.Fatal("podman's layer is empty: the scenario changed nothing")
			}
			// podman's whiteouts keep the overlay whiteout's own mode (0000),
			// and, as docker's, a stale link name on the second whiteout of
			// the shared inode; snap writes docker's 0600 and no link.
			whiteouts := func(d, s *Entry) {
				if strings.HasPrefix(path.Base(d.Name), ".wh.") && d.Type == '0' {
					d.Link = ""
					if d.Mode == 0 {
						d.Mode = 0o600
					}
				}
			}
			for _, d := range Compare(pe, se, whiteouts) {
				t.Error(d)
			}
			checkSnapOnly(t, se, sc.snapOnly)

			sorted := func(s string) string {
				l := strings.Split(strings.TrimSpace(s), "\n")
				slices.Sort(l)
				return strings.Join(l, "\n")
			}
			want := p.must("diff", name)
			got := mustSnap(t, store, "diff", "-H", p.sock, "podman://"+name)
			if sorted(got) != sorted(want) {
				t.Errorf("snap diff podman://%s\n%s\npodman diff:\n%s", name, got, want)
			}
			// --squash: the normal commit's layers, flattened.
			squashEqualsLayers(t, store, "podman://"+name, "pod-"+sc.name, "-H", p.sock)
		})
	}
}

// counter reads the running container's counter.
func (p *podman) counter(t *testing.T, name string) int {
	t.Helper()
	// The shell truncates the file before it writes: read again when empty.
	var out string
	for i := 0; i < 20 && strings.TrimSpace(out) == ""; i++ {
		var err error
		if out, err = p.run("exec", name, "cat", "/tmp/count"); err != nil {
			t.Fatal(err)
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitCounting waits until the container has written its counter.
func (p *podman) waitCounting(name string) {
	p.t.Helper()
	for i := 0; ; i++ {
		if _, err := p.run("exec", name, "cat", "/tmp/count"); err == nil {
			return
		}
		if i == 200 {
			p.t.Fatalf("%s never wrote /tmp/count", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keepsCounting fails t unless the container's counter moves on.
func (p *podman) keepsCounting(t *testing.T, name string) {
	t.Helper()
	if st, err := p.run("inspect", "--format", "{{.State.Status}}", name); err != nil || strings.TrimSpace(st) != "running" {
		t.Fatalf("%s after the commit: %s %v", name, st, err)
	}
	before := p.counter(t, name)
	for i := 0; p.counter(t, name) == before; i++ {
		if i == 100 {
			t.Fatalf("%s: the counter stays at %d after the commit", name, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCommitPodmanContainer commits a running podman container, once as
// docker:// through DOCKER_HOST and once as podman:// through
// CONTAINER_HOST: paused for the walk by podman (its events say so), still
// counting after, author, message and -c in the image, the config podman
// commit writes, and the history podman shows of the image loaded into it
// the same as snap's.
func TestCommitPodmanContainer(t *testing.T) {
	p := startPodman(t)
	name := "snap-pod-running"
	p.must(append(append([]string{"run", "-d", "--name", name}, podmanRunFlags...), podmanBase,
		"sh", "-c", "echo made-in-podman > /etc/motd; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done")...)
	p.waitCounting(name)
	store := filepath.Join(t.TempDir(), "store")
	cmdline := "sh -c echo made-in-podman > /etc/motd; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"

	p.must("commit", "-q", "-f", "docker", name, "localhost/snap-pod/reference:1")
	var ref []struct{ Config json.RawMessage }
	if err := json.Unmarshal([]byte(p.must("image", "inspect", "localhost/snap-pod/reference:1")), &ref); err != nil || len(ref) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	configOf := func(raw []byte) string {
		var c struct {
			Env        []string
			Cmd        []string
			Entrypoint []string
			WorkingDir string
			User       string
			Labels     map[string]string
			StopSignal string
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		// Through a map, as the expectation is built: keys sorted.
		var m map[string]any
		b, _ := json.Marshal(c)
		json.Unmarshal(b, &m)
		b, _ = json.Marshal(m)
		return string(b)
	}

	since := time.Now().Add(-time.Second).Format(time.RFC3339)
	for i, tc := range []struct{ kind, env, ref string }{
		{"docker", "DOCKER_HOST", "docker://" + name},
		{"podman", "CONTAINER_HOST", "podman://" + name},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Setenv(tc.env, p.sock)
			tag := "snap-pod/" + tc.kind + ":1"
			id := strings.TrimSpace(mustSnap(t, store, "commit", "-a", "Ops <ops@example.com>", "-m", "from podman", "-c", "ENV MODE=golden", "-c", "EXPOSE 80",
				"-H", p.sock, "--to-docker", tc.ref, tag))
			p.keepsCounting(t, name)
			events := p.must("events", "--stream=false", "--since", since, "--filter", "container="+name,
				"--filter", "event=pause", "--filter", "event=unpause", "--format", "{{.Status}}")
			if want := strings.Repeat("pause\nunpause\n", i+1); events != want {
				t.Errorf("podman's events since the first commit: %q, want %q", events, want)
			}

			var img []struct {
				Author string
				Config json.RawMessage
			}
			if err := json.Unmarshal([]byte(p.must("image", "inspect", id)), &img); err != nil || len(img) != 1 {
				t.Fatalf("podman image inspect of snap's image: %v", err)
			}
			if img[0].Author != "Ops <ops@example.com>" {
				t.Errorf("author %q", img[0].Author)
			}
			// -c on top of what podman commit writes.
			var want map[string]any
			json.Unmarshal([]byte(configOf(ref[0].Config)), &want)
			want["Env"] = append(want["Env"].([]any), "MODE=golden")
			wb, _ := json.Marshal(want)
			if got := configOf(img[0].Config); got != string(wb) {
				t.Errorf("config\n got %s\nwant %s (podman commit's, with -c)", got, wb)
			}
			var ports struct{ ExposedPorts map[string]any }
			json.Unmarshal(img[0].Config, &ports)
			if _, ok := ports.ExposedPorts["80/tcp"]; !ok {
				t.Errorf("-c EXPOSE 80 lost: %s", img[0].Config)
			}

			format := "{{.CreatedBy}}|{{.Comment}}"
			h := mustSnap(t, store, "history", "--no-trunc", "--format", format, tag)
			if !strings.HasPrefix(h, cmdline+"|from podman\n") || strings.Count(h, "\n") != 2 {
				t.Errorf("snap history\n%s", h)
			}
			if ph := p.must("history", "--no-trunc", "--format", format, id); ph != h {
				t.Errorf("podman history of snap's image\n%s\nsnap history\n%s", ph, h)
			}
			got := p.must(append(append([]string{"run", "--rm"}, podmanRunFlags...), id, "sh", "-c", "cat /etc/motd; echo $MODE; ls /run/.containerenv")...)
			if !strings.HasPrefix(got, "made-in-podman\ngolden\n") {
				t.Errorf("podman run of snap's image: %q", got)
			}
		})
	}
}

// TestPodmanService: podman:// with no CONTAINER_HOST and no socket at
// podman's own path starts a service of its own for the commit (seeing the
// storage podman is configured with) and stops it after, also when snap's
// process group is interrupted mid-commit (the container runs on); a
// CONTAINER_HOST that does not answer is an error that names it, and
// nothing is started.
func TestPodmanService(t *testing.T) {
	p := startPodman(t)
	if os.Geteuid() == 0 && answersSock("/run/podman/podman.sock") {
		t.Skip("a podman service runs at /run/podman/podman.sock: snap uses it, and it is not this test's")
	}
	name := "snap-pod-service"
	p.must(append(append([]string{"run", "-d", "--name", name}, podmanRunFlags...), podmanBase,
		"sh", "-c", "echo svc > /etc/svc; i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done")...)
	p.waitCounting(name)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	store := filepath.Join(t.TempDir(), "store")
	mustSnap(t, store, "commit", "-m", "own service", "podman://"+name, "snap-pod/service:1")
	p.keepsCounting(t, name)
	if left, _ := filepath.Glob(filepath.Join(tmp, "snap-podman-*")); len(left) != 0 {
		t.Errorf("the service snap started left %v", left)
	}
	if got := mustSnap(t, store, "diff", "podman://"+name); !strings.Contains(got, "A /etc/svc\n") || strings.Contains(got, "containerenv") {
		t.Errorf("snap diff podman://%s:\n%s", name, got)
	}

	// Ctrl-C at a terminal signals snap's whole process group while the
	// container is paused: the service snap started must outlive it to
	// unpause.
	upper := p.inspect(name, "{{.GraphDriver.Data.UpperDir}}")
	for i := range 30 { // a big upper, so the commit is still walking when interrupted
		sh(t, fmt.Sprintf("head -c 8000000 /dev/urandom > %s/big%d", upper, i))
	}
	bin := filepath.Join(t.TempDir(), "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, "--root", store, "commit", "podman://"+name, "interrupted:1")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		if st, _ := p.run("inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(st) == "paused" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(-c.Process.Pid, syscall.SIGINT)
	err := c.Wait()
	p.keepsCounting(t, name)
	if err == nil {
		t.Log("the commit finished before the signal arrived")
	} else if _, _, code := snapCLI(t, store, "inspect", "interrupted:1"); code == 0 {
		t.Error("an interrupted commit left a tag")
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "snap-podman-*")); len(left) != 0 {
		t.Errorf("the service of the interrupted commit left %v", left)
	}

	t.Setenv("CONTAINER_HOST", "unix://"+filepath.Join(tmp, "nothing.sock"))
	if _, errs, code := snapCLI(t, store, "commit", "podman://"+name, "x:1"); code != 1 || !strings.Contains(errs, "nothing.sock") || strings.Count(errs, "\n") != 1 {
		t.Errorf("CONTAINER_HOST not answering: exit %d, %q", code, errs)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "snap-podman-*")); len(left) != 0 {
		t.Errorf("with CONTAINER_HOST set snap started a service anyway: %v", left)
	}
}

func answersSock(sock string) bool {
	c, err := exec.Command("sh", "-c", "test -S "+sock).CombinedOutput()
	return err == nil && len(c) == 0
}
