package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/internal/registrytest"
	"snap/store"
)

// writeCapture writes a capture file named name in e.dir/c and returns
// its path.
func (e *env) writeCapture(name, body string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, "c")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// index is the store's index.json, which must be a valid OCI index.
func (e *env) index() []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, "index.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil || idx.SchemaVersion != 2 {
		e.t.Fatalf("index.json is not an OCI index (%v):\n%s", err, b)
	}
	return b
}

// tagged reports whether ref names an image in the store.
func (e *env) tagged(ref string) bool {
	e.t.Helper()
	_, _, code := e.snap("inspect", ref)
	return code == 0
}

// startCapture starts snap capture and returns once its stderr has shown
// marker (a step printing it before it sleeps); the process is left running.
func (e *env) startCapture(marker string, args ...string) (*exec.Cmd, func() string) {
	e.t.Helper()
	cmd := exec.Command(bin, append([]string{"capture"}, args...)...)
	cmd.Env, cmd.Dir = e.environ(), e.dir
	pr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		all  bytes.Buffer
		seen = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		r := bufio.NewReader(pr)
		once := false
		for {
			line, err := r.ReadString('\n')
			mu.Lock()
			all.WriteString(line)
			mu.Unlock()
			if !once && strings.Contains(line, marker) {
				once = true
				close(seen)
			}
			if err != nil {
				if !once {
					close(seen)
				}
				return
			}
		}
	}()
	select {
	case <-seen:
	case <-time.After(cmdTimeout):
		cmd.Process.Kill()
		e.t.Fatalf("snap capture never printed %q", marker)
	}
	stderr := func() string {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return all.String()
	}
	mu.Lock()
	got := all.String()
	mu.Unlock()
	if !strings.Contains(got, marker) {
		cmd.Wait()
		e.t.Fatalf("snap capture ended before %q:\n%s", marker, stderr())
	}
	return cmd, stderr
}

// cleanContainers removes every container of the store.
func (e *env) cleanContainers() {
	e.t.Helper()
	for _, id := range strings.Fields(e.must("ps", "-a", "-q")) {
		e.must("rm", "-f", id)
	}
}

const sleepyCapture = `base: base:1
vars:
  S: "600"
steps:
  - run: echo before > /before
  - run: echo $((2+3))inside; sleep ${S}; echo $((1+1))wake
tags: [sleepy:1]
`

// TestCaptureAttackKill: a capture killed (SIGKILL) in a run step moves
// no tag and leaves index.json an index; the next capture of the file
// completes and tags, and no mount is left once containers are removed.
func TestCaptureAttackKill(t *testing.T) {
	e := newEnv(t)
	cf := e.writeCapture("capture.yaml", sleepyCapture)
	e.must("tag", "base:1", "sleepy:1") // a tag the killed capture must not move
	before := e.must("inspect", "--format", "{{.Id}}", "sleepy:1")
	cmd, stderr := e.startCapture("5inside", "-f", cf)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	t.Logf("killed capture:\n%s", stderr())
	e.index()
	if got := e.must("inspect", "--format", "{{.Id}}", "sleepy:1"); got != before {
		t.Errorf("the killed capture moved sleepy:1: %s, was %s", got, before)
	}
	// As docker build's, the killed step's container stays (its init was
	// no child of snap): snap ps -a shows it, still running.
	left := strings.Fields(e.must("ps", "-a", "-q"))
	if len(left) != 1 {
		t.Errorf("snap ps -a after the kill: %q, want the step's container", left)
	}

	// The next capture removes it (its capture is gone), runs, and leaves
	// no container and no mount of its own.
	out, errs, code := e.snap("capture", "-f", cf, "-e", "S=0")
	if code != 0 {
		t.Fatalf("the capture after the kill: exit %d:\n%s", code, errs)
	}
	if !strings.Contains(errs, "left by a capture that was killed") {
		t.Errorf("the next capture did not say it removed the killed one's container:\n%s", errs)
	}
	if now := strings.Fields(e.must("ps", "-a", "-q")); len(now) != 0 {
		t.Errorf("containers after the next capture: %q, were %q", now, left)
	}
	if m := e.mounts(); len(m) != 0 {
		t.Errorf("mounts after the next capture: %q", m)
	}
	if got := e.must("inspect", "--format", "{{.Id}}", "sleepy:1"); got != strings.TrimSpace(out)+"\n" && strings.TrimSpace(got) != strings.TrimSpace(out) {
		t.Errorf("sleepy:1 is %s, the capture made %s", got, out)
	}
	e.index()
	e.cleanContainers()
	if m := e.mounts(); len(m) > 0 {
		t.Errorf("mounts left under the store: %q", m)
	}
}

// TestCaptureAttackInterrupt: Ctrl-C in a run step ends the capture with
// 130, removes the step's container, leaves no mount and tags nothing.
func TestCaptureAttackInterrupt(t *testing.T) {
	for _, tc := range []struct{ name, file, marker string }{
		{"step", sleepyCapture, "5inside"},
		// A verify's output is shown only when it fails.
		{"verify", "base: base:1\nvars:\n  S: \"600\"\nverify:\n  - run: echo $((2+3))inside; sleep ${S}; echo $((1+1))wake\ntags: [sleepy:1]\n", "Verify 1/1"},
	} {
		t.Run(tc.name, func(t *testing.T) { interrupt(t, tc.file, tc.marker) })
	}
}

func interrupt(t *testing.T, file, marker string) {
	e := newEnv(t)
	cf := e.writeCapture("capture.yaml", file)
	cmd, stderr := e.startCapture(marker, "-f", cf)
	for deadline := time.Now().Add(cmdTimeout); strings.TrimSpace(e.must("ps", "-q")) == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no container ever ran:\n%s", stderr())
		}
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cmdTimeout): // the step sleeps 600 s: a bound, not a timing
		cmd.Process.Kill()
		<-done
		t.Fatalf("snap capture still running %v after SIGINT: the step was not stopped", cmdTimeout)
	}
	errs := stderr()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("SIGINT: exit %d (after %v), want 130:\n%s", code, time.Since(start), errs)
	}
	if strings.Contains(errs, "snap: ") {
		t.Errorf("an interrupted capture printed an error (a command a signal stops prints none):\n%s", errs)
	}
	if strings.Contains(errs, "2wake") {
		t.Errorf("the step ran to its end")
	}
	if ps := strings.TrimSpace(e.must("ps", "-a", "-q")); ps != "" {
		t.Errorf("containers left after SIGINT: %s", ps)
	}
	if m := e.mounts(); len(m) > 0 {
		t.Errorf("mounts left under the store: %q", m)
	}
	if e.tagged("sleepy:1") {
		t.Errorf("an interrupted capture tagged sleepy:1")
	}
	e.index()
}

// TestCaptureAttackRace: two captures of one file at once on one store
// both succeed with the same image ID, and the cache files are whole.
func TestCaptureAttackRace(t *testing.T) {
	for _, squash := range []string{"false", "true"} {
		t.Run("squash "+squash, func(t *testing.T) { captureRace(t, squash) })
	}
}

func captureRace(t *testing.T, squash string) {
	e := newEnv(t)
	e.vars = append(e.vars, "SOURCE_DATE_EPOCH=1700000000")
	cf := e.writeCapture("capture.yaml", `base: base:1
steps:
  - run: echo one > /one
  - env: A=b
  - run: echo two > /two
generalize: true
commit:
  squash: `+squash+`
tags: [race:1, race:latest]
`)
	type res struct {
		out, errs string
		code      int
	}
	var wg sync.WaitGroup
	rs := make([]res, 2)
	for i := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, er, c := e.snap("capture", "-f", cf)
			rs[i] = res{o, er, c}
		}()
	}
	wg.Wait()
	for i, r := range rs {
		if r.code != 0 {
			t.Errorf("capture %d: exit %d:\n%s", i, r.code, r.errs)
		}
	}
	if rs[0].out != rs[1].out {
		t.Errorf("racing captures made %q and %q", rs[0].out, rs[1].out)
	}
	if got := e.must("inspect", "--format", "{{.Id}}", "race:1"); strings.TrimSpace(got) != strings.TrimSpace(rs[0].out) {
		t.Errorf("race:1 is %s, the captures made %s", got, rs[0].out)
	}
	e.index()
	checkStateFiles(t, e.root)
	if got := e.must("run", "--rm", "race:1", "cat", "/one", "/two"); got != "one\ntwo\n" {
		t.Errorf("race:1 holds %q", got)
	}
}

// checkStateFiles fails when a capture state file is not whole.
func checkStateFiles(t *testing.T, root string) {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(root, "capture"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, _ := os.ReadFile(p)
		switch {
		case strings.HasPrefix(d.Name(), ".tmp"):
			t.Errorf("temp file left: %s", p)
		case filepath.Base(filepath.Dir(p)) == "steps":
			if s := string(b); !strings.HasPrefix(s, "sha256:") || len(s) != len("sha256:")+64+1 {
				t.Errorf("step record %s: %q", p, s)
			}
		case filepath.Base(filepath.Dir(p)) == "runs":
			var r struct{ Image string }
			if err := json.Unmarshal(b, &r); err != nil || !strings.HasPrefix(r.Image, "sha256:") {
				t.Errorf("run record %s: %q", p, b)
			}
		}
		return nil
	})
	if n == 0 {
		t.Errorf("no capture state under %s", root)
	}
}

// TestCaptureAttackTamperedState: step and run records that are garbage,
// a path, or name a removed image are cache misses; the capture works.
func TestCaptureAttackTamperedState(t *testing.T) {
	e := newEnv(t)
	cf := e.writeCapture("capture.yaml", `base: base:1
steps:
  - run: echo ran-the-step; echo x > /x
tags: [tamper:1]
`)
	e.must("capture", "-f", cf)
	// An image the store does not have.
	goneID := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct{ name, step, run string }{
		{"path", "../../../etc/passwd\n", `{"image":"../../../etc/passwd"}`},
		{"garbage", "\x00\xffnot a digest", "{{{garbage"},
		{"removed image", goneID + "\n", `{"image":"` + goneID + `","created":"2020-01-01T00:00:00Z"}`},
		{"abs path", "/etc/passwd", `{"image":"/etc/passwd"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.on(t)
			for dir, body := range map[string]string{"steps": tc.step, "runs": tc.run} {
				ents, err := os.ReadDir(filepath.Join(e.root, "capture", dir))
				if err != nil || len(ents) == 0 {
					t.Fatalf("no %s records: %v", dir, err)
				}
				for _, en := range ents {
					if err := os.WriteFile(filepath.Join(e.root, "capture", dir, en.Name()), []byte(body), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			out, errs, code := e.snap("capture", "-f", cf)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, errs)
			}
			if !strings.Contains(errs, "ran-the-step") || strings.Contains(errs, "Unchanged") {
				t.Errorf("a tampered record was a hit:\n%s", errs)
			}
			if got := e.must("inspect", "--format", "{{.Id}}", "tamper:1"); strings.TrimSpace(got) != strings.TrimSpace(out) {
				t.Errorf("tamper:1 is %s, made %s", got, out)
			}
		})
	}
}

// TestCaptureAttackHostileBase: a base whose /etc or /var/log is a
// symlink out (to a host path, or up) never gets a copy, generalize or a
// whiteout exclude outside the container's rootfs.
func TestCaptureAttackHostileBase(t *testing.T) {
	e := newEnv(t)
	host, err := os.MkdirTemp("", "outside-capattack-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(host)
	for _, n := range []string{"secret", "x", "passwd"} {
		if err := os.WriteFile(filepath.Join(host, n), []byte("host "+n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hostLog := filepath.Join(host, "log")
	os.MkdirAll(hostLog, 0o755)
	os.WriteFile(filepath.Join(hostLog, "host.log"), []byte("host log\n"), 0o644)
	checkHost := func(t *testing.T) {
		t.Helper()
		ents, _ := os.ReadDir(host)
		if len(ents) != 4 {
			t.Errorf("host dir now holds %d entries", len(ents))
		}
		for _, n := range []string{"secret", "x", "passwd"} {
			if b, err := os.ReadFile(filepath.Join(host, n)); err != nil || string(b) != "host "+n+"\n" {
				t.Errorf("host file %s: %q %v", n, b, err)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(hostLog, "host.log")); string(b) != "host log\n" {
			t.Errorf("host log emptied")
		}
	}
	src := filepath.Join(e.dir, "c", "files", "x")
	os.MkdirAll(filepath.Dir(src), 0o755)
	os.WriteFile(src, []byte("copied\n"), 0o644)

	for _, tc := range []struct {
		name, link, target string
	}{
		{"etc to host", "etc", host},
		{"etc up", "etc", "../../.." + host},
		{"var/log to host", "var/log", hostLog},
		{"var/log to etc", "var/log", "/etc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.on(t)
			slug := strings.NewReplacer(" ", "-", "/", "-").Replace(tc.name)
			rootfs := e.rootfs("hostile-" + slug)
			os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
			os.WriteFile(filepath.Join(rootfs, "etc", "keep.conf"), []byte("kept\n"), 0o644)
			os.MkdirAll(filepath.Join(rootfs, "var"), 0o755)
			p := filepath.Join(rootfs, tc.link)
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target, p); err != nil {
				t.Fatal(err)
			}
			img := "hostile:" + slug
			e.must("commit", "--base", "base:1", "dir://"+rootfs, img)
			cf := e.writeCapture("hostile.yaml", `base: `+img+`
steps:
  - copy: {src: files/x, dst: /etc/x}
  - run: mkdir -p /var/log/sub 2>/dev/null; echo step > /var/log/step.log 2>/dev/null; true
exclude:
  - {path: /etc/secret, whiteout: true}
  - {path: /etc/passwd, whiteout: true}
generalize: true
tags: [hostile-out:1]
`)
			_, errs, code := e.snap("capture", "-f", cf)
			t.Logf("capture: exit %d:\n%s", code, errs)
			checkHost(t)
			if code == 0 {
				got, _, _ := e.snap("run", "--rm", "hostile-out:1", "cat", "/etc/x")
				if got != "copied\n" {
					t.Errorf("/etc/x in the image: %q", got)
				}
			}
			if b, err := os.ReadFile(filepath.Join(rootfs, "etc", "keep.conf")); tc.link != "etc" && (err != nil || string(b) != "kept\n") {
				t.Errorf("the rootfs' own /etc/keep.conf: %q %v", b, err)
			}
			if tc.link == "var/log" && code == 0 {
				if got := e.must("run", "--rm", "hostile-out:1", "cat", "/etc/keep.conf"); got != "kept\n" {
					t.Errorf("/etc/keep.conf through /var/log -> /etc: %q", got)
				}
			}
		})
	}
}

// imageOf opens the store and looks up ref.
func (e *env) imageOf(t *testing.T, ref string) *store.Image {
	t.Helper()
	st, err := store.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup(ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestCaptureAttackSquash: squash: true gives the filesystem the steps'
// layers give, in base layers + 1, with the steps' history kept empty.
func TestCaptureAttackSquash(t *testing.T) {
	e := newEnv(t)
	e.vars = append(e.vars, "SOURCE_DATE_EPOCH=1700000000")
	body := `base: base:1
steps:
  - run: mkdir -p /opt && echo a > /opt/a && echo b > /opt/b && rm /bin/true 2>/dev/null; echo ok
  - env: X=1
  - run: rm /opt/b && echo c > /opt/c && echo changed > /etc/hostname.d
  - workdir: /opt
squash: SQUASH
tags: [sq:TAG]
`
	body = strings.Replace(body, "squash: SQUASH", "commit:\n  squash: SQUASH", 1)
	e.must("capture", "-f", e.writeCapture("plain.yaml", strings.NewReplacer("SQUASH", "false", "TAG", "plain").Replace(body)))
	e.must("capture", "-f", e.writeCapture("squash.yaml", strings.NewReplacer("SQUASH", "true", "TAG", "squashed").Replace(body)))
	if d := e.must("diff", "sq:plain", "sq:squashed"); d != "" {
		t.Errorf("snap diff sq:plain sq:squashed:\n%s", d)
	}
	base, sq, plain := e.imageOf(t, "base:1"), e.imageOf(t, "sq:squashed"), e.imageOf(t, "sq:plain")
	if got, want := len(sq.Manifest.Layers), len(base.Manifest.Layers)+1; got != want {
		t.Errorf("squashed: %d layers, want %d", got, want)
	}
	if len(plain.Manifest.Layers) <= len(sq.Manifest.Layers) {
		t.Errorf("plain: %d layers, squashed %d", len(plain.Manifest.Layers), len(sq.Manifest.Layers))
	}
	h := sq.Config.History[len(base.Config.History):]
	var steps []string
	nonEmpty := 0
	for _, x := range h {
		if !x.EmptyLayer {
			nonEmpty++
		} else {
			steps = append(steps, x.CreatedBy)
		}
	}
	if nonEmpty != 1 || len(h) < 5 {
		t.Errorf("squashed history: %d entries with a layer, %d in all: %+v", nonEmpty, len(h), h)
	}
	want := []string{"/bin/sh -c mkdir", "ENV X=1", "/bin/sh -c rm /opt/b", "WORKDIR /opt"}
	for i, w := range want {
		if i >= len(steps) || !strings.HasPrefix(steps[i], w) {
			t.Errorf("squashed history entry %d: %q, want %q...", i, steps, w)
			break
		}
	}
	if got := e.must("run", "--rm", "sq:squashed", "sh", "-c", "pwd; ls /opt; echo $X"); got != "/opt\na\nc\n1\n" {
		t.Errorf("sq:squashed runs as %q", got)
	}
}

// TestCaptureAttackContainerBase: a snap container's NAME as base is
// committed as it is, then the steps run on it.
func TestCaptureAttackContainerBase(t *testing.T) {
	e := newEnv(t)
	e.must("run", "-d", "--name", "capbase", "base:1", "sleep", "600")
	e.must("exec", "capbase", "sh", "-c", "echo changed-live > /etc/live")
	cf := e.writeCapture("capture.yaml", `base: capbase
steps:
  - run: cat /etc/live > /copied-live
tags: [fromctr:1]
`)
	_, errs, code := e.snap("capture", "-f", cf)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs)
	}
	if got := e.must("run", "--rm", "fromctr:1", "cat", "/etc/live", "/copied-live"); got != "changed-live\nchanged-live\n" {
		t.Errorf("fromctr:1: %q", got)
	}
	if s := e.status("capbase"); !strings.HasPrefix(s, "Up") {
		t.Errorf("capbase after the capture: %q", s)
	}
}

// TestCaptureAttackRegistryBase: a registry base the store lacks is
// pulled, then captured.
func TestCaptureAttackRegistryBase(t *testing.T) {
	e := registryEnv(t)
	reg := registrytest.Start(t, registrytest.Options{})
	ref := reg.Ref("capattack/x:1")
	e.must("push", "base:1", ref)
	empty := e.on(t)
	empty.root = filepath.Join(e.dir, "empty-store")
	cf := empty.writeCapture("capture.yaml", "base: "+ref+"\nsteps:\n  - run: echo pulled > /p\ntags: [frompull:1]\n")
	_, errs, code := empty.snap("capture", "-f", cf)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, errs)
	}
	if !strings.Contains(errs, "Unable to find image") {
		t.Errorf("no pull shown:\n%s", errs)
	}
	if got := empty.must("run", "--rm", "frompull:1", "cat", "/p"); got != "pulled\n" {
		t.Errorf("frompull:1: %q", got)
	}
	if !empty.tagged(ref) {
		t.Errorf("the pulled base is not in the store")
	}

	// A newer base in the registry: the capture keeps what the store has,
	// unchanged; with --pull it fetches the new one and captures again.
	first := empty.must("inspect", "--format", "{{.Id}}", "frompull:1")
	rootfs := e.rootfs("newer")
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("a newer base\n"), 0o644)
	e.must("commit", "--base", "base:1", "dir://"+rootfs, "base:2")
	e.must("push", "base:2", ref)
	if _, errs, code := empty.snap("capture", "-f", cf); code != 0 || !strings.Contains(errs, "Unchanged") {
		t.Errorf("without --pull: exit %d:\n%s", code, errs)
	}
	if _, errs, code := empty.snap("capture", "-f", cf, "--pull"); code != 0 || strings.Contains(errs, "Unchanged") {
		t.Errorf("with --pull: exit %d:\n%s", code, errs)
	}
	if got := empty.must("run", "--rm", "frompull:1", "cat", "/etc/motd", "/p"); got != "a newer base\npulled\n" {
		t.Errorf("frompull:1 after --pull: %q", got)
	}
	if again := empty.must("inspect", "--format", "{{.Id}}", "frompull:1"); again == first {
		t.Errorf("--pull made the same image %s", again)
	}
}

// TestCaptureAttackBadInput: bad files and bases are one line naming the
// thing, exit 1, nothing tagged, the store's index as it was.
func TestCaptureAttackBadInput(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "c")
	os.MkdirAll(dir, 0o755)
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	os.WriteFile(big, append([]byte("base: base:1\n#"), bytes.Repeat([]byte("x"), 2<<20)...), 0o644)
	os.MkdirAll(filepath.Join(dir, "adir"), 0o755)
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "x"), []byte("x\n"), 0o644)
	os.WriteFile(filepath.Join(e.dir, "outside"), []byte("x"), 0o644)
	for _, tc := range []struct {
		name, file, body, want string
		index                  bool // the index must stay as it was
	}{
		{"unknown base", "", "base: nosuch:1\ntags: [bad:1]\n", "nosuch", true},
		{"base a blob digest", "", "base: sha256:" + strings.Repeat("a", 64) + "\ntags: [bad:1]\n", "sha256:aaaa", true},
		{"fifo", fifo, "", "fifo.yaml", true},
		{"directory", filepath.Join(dir, "adir"), "", "adir", true},
		{"2 MiB", big, "", "big.yaml", true},
		{"unknown key", "", "base: base:1\nstep: []\ntags: [bad:1]\n", "step", true},
		{"copy src ..", "", "base: base:1\nsteps:\n  - copy: {src: ../outside, dst: /x}\ntags: [bad:1]\n", "../outside", true},
		{"step exits 3", "", "base: base:1\nsteps:\n  - run: echo failing-step; exit 3\ntags: [bad:1]\n", "exited 3", true},
		{"copy owner unknown", "", "base: base:1\nsteps:\n  - copy: {src: files/x, dst: /x, owner: nosuchuser}\ntags: [bad:1]\n", "nosuchuser", true},
		{"verify exits 3", "", "base: base:1\nverify:\n  - run: exit 3\ntags: [bad:1]\n", "exited 3", false},
		{"missing file", filepath.Join(dir, "nope.yaml"), "", "nope.yaml", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.on(t)
			f := tc.file
			if f == "" {
				f = e.writeCapture("bad.yaml", tc.body)
			}
			before := e.index()
			done := make(chan struct{})
			var errs string
			var code int
			go func() {
				defer close(done)
				_, errs, code = e.snap("capture", "-f", f)
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				// A FIFO nobody writes would block a read for ever.
				if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
				<-done
				t.Errorf("snap capture -f %s blocked", f)
			}
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			last := lines[len(lines)-1]
			if code != 1 || !strings.HasPrefix(last, "snap: ") || !strings.Contains(last, tc.want) {
				t.Errorf("exit %d, want 1 and a last line snap: ... naming %q:\n%s", code, tc.want, errs)
			}
			if tc.body != "" && !strings.Contains(tc.body, "steps:") && !strings.Contains(tc.body, "verify:") && len(lines) != 1 {
				t.Errorf("more than one line:\n%s", errs)
			}
			if m := e.mounts(); len(m) > 0 {
				t.Errorf("mounts left: %q", m)
			}
			if ps := strings.TrimSpace(e.must("ps", "-a", "-q")); ps != "" {
				t.Errorf("containers left: %s", ps)
			}
			if e.tagged("bad:1") {
				t.Errorf("tagged bad:1")
			}
			if after := e.index(); tc.index && !bytes.Equal(before, after) {
				t.Errorf("index.json changed:\n%s\n->\n%s", before, after)
			}
		})
	}
}

// TestCaptureAttackImagesHidesSteps: snap images lists a capture's
// result, not its step images, unless -a.
func TestCaptureAttackImagesHidesSteps(t *testing.T) {
	e := newEnv(t)
	e.must("capture", "-f", e.writeCapture("capture.yaml", `base: base:1
steps:
  - run: echo a > /a
  - env: B=1
  - run: echo c > /c
tags: [shown:1]
`))
	var steps []string
	ents, err := os.ReadDir(filepath.Join(e.root, "capture", "steps"))
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range ents {
		b, err := os.ReadFile(filepath.Join(e.root, "capture", "steps", en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, strings.TrimPrefix(strings.TrimSpace(string(b)), "sha256:")[:12])
	}
	if len(steps) != 3 {
		t.Fatalf("%d step records, want 3", len(steps))
	}
	plain, all := e.must("images", "-q"), e.must("images", "-a", "-q")
	for _, s := range steps {
		if strings.Contains(plain, s) {
			t.Errorf("snap images shows step image %s:\n%s", s, plain)
		}
		if !strings.Contains(all, s) {
			t.Errorf("snap images -a hides step image %s:\n%s", s, all)
		}
	}
	shown := strings.TrimPrefix(strings.TrimSpace(e.must("inspect", "--format", "{{.Id}}", "shown:1")), "sha256:")
	if !strings.Contains(plain, shown[:12]) {
		t.Errorf("snap images hides the result %s:\n%s", shown, plain)
	}
}
