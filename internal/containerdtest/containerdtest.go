// Package containerdtest runs a private containerd for tests: Debian's
// containerd with its own config, root, state, runc root and gRPC socket in
// a temp dir, never the machine's daemon or socket. Tests drive it with
// Debian's ctr (image import, run) and snap's containerd:// source, and the
// daemon, its tasks and their mounts are gone when the test ends.
package containerdtest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"snap/internal/testenv"
)

// Daemon is one running containerd.
type Daemon struct {
	Dir      string // config.toml, root/, state/, runc/, containerd.log
	Address  string // the gRPC socket
	RuncRoot string // runc's state dir for this daemon's tasks (ctr run --runc-root)
	Root     string // containerd's root: snapshotters and content live below

	cmd    *exec.Cmd
	exited chan struct{}
}

// config is containerd 1.6's config (version 2): everything in dir; CRI,
// which would want CNI, and the snapshotters the tests do not use are off.
const config = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = %[5]q
  level = "info"

[metrics]
  address = ""
`

// Start starts a containerd for t, or skips t (fails it in CI) when root,
// containerd, ctr or runc is missing. It is stopped, with every task it
// runs killed, when t ends.
func Start(t testing.TB) *Daemon {
	t.Helper()
	testenv.Root(t, "containerd")
	bin := testenv.Tool(t, "containerd")
	testenv.Tool(t, "ctr")
	testenv.Tool(t, "runc")
	testenv.Tool(t, "containerd-shim-runc-v2")
	// Short: the socket path must fit in sun_path, and the shims' too.
	dir, err := os.MkdirTemp("", "snap-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{
		Dir:      dir,
		Address:  filepath.Join(dir, "c.sock"),
		RuncRoot: filepath.Join(dir, "runc"),
		Root:     filepath.Join(dir, "root"),
		exited:   make(chan struct{}),
	}
	cfg := filepath.Join(dir, "config.toml")
	body := fmt.Sprintf(config, d.Root, filepath.Join(dir, "state"), d.Address, d.Address+".ttrpc", filepath.Join(dir, "debug.sock"))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin, "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	// Its own process group: a ^C of the test run reaches it through the
	// test's cleanup, not twice.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		log.Close()
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); log.Close(); close(d.exited) }()
	t.Cleanup(func() { d.stop(t) })
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", d.Address); err == nil {
			c.Close()
			if _, err := d.Ctr("version"); err == nil {
				break
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("containerd exited at start: %s", d.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if i == 400 {
			t.Fatalf("containerd did not answer on %s within 20s: %s", d.Address, d.Log())
		}
	}
	return d
}

// Log is the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "containerd.log"))
	return string(b)
}

// Ctr runs ctr against this daemon (ctr -a SOCKET ARGS...) and returns its
// stdout; the error carries stderr.
func (d *Daemon) Ctr(args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"-a", d.Address}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// MustCtr is Ctr that fails t.
func (d *Daemon) MustCtr(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.Ctr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Import imports an image archive (docker-archive or OCI) into namespace
// ns and returns the names containerd gave its images.
func (d *Daemon) Import(t testing.TB, ns, archive string, args ...string) []string {
	t.Helper()
	out := d.MustCtr(t, append(append([]string{"-n", ns, "image", "import"}, args...), archive)...)
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		// "unpacking docker.io/library/x:1 (sha256:...)...done"
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "unpacking" {
			names = append(names, f[1])
		}
	}
	if len(names) == 0 {
		t.Fatalf("ctr image import %s: no image imported: %q", archive, out)
	}
	return names
}

// Run starts a container of image in namespace ns running args, detached
// (ctr run -d) with extra ctr run flags before the image.
func (d *Daemon) Run(t testing.TB, ns, image, id string, flags []string, args ...string) {
	t.Helper()
	a := append([]string{"-n", ns, "run", "-d", "--null-io", "--runc-root", d.RuncRoot}, flags...)
	d.MustCtr(t, append(append(a, image, id), args...)...)
}

// RunToEnd runs a container to its end (ctr run, in the foreground); the
// container and its snapshot stay, its task is gone.
func (d *Daemon) RunToEnd(t testing.TB, ns, image, id string, flags []string, args ...string) {
	t.Helper()
	a := append([]string{"-n", ns, "run", "--null-io", "--runc-root", d.RuncRoot}, flags...)
	d.MustCtr(t, append(append(a, image, id), args...)...)
}

// TaskStatus is the status ctr task ls shows for id (RUNNING, PAUSED,
// STOPPED), or "" when it has no task.
func (d *Daemon) TaskStatus(t testing.TB, ns, id string) string {
	t.Helper()
	out := d.MustCtr(t, "-n", ns, "task", "ls")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// stop kills every task, removes the containers, stops the daemon and
// unmounts whatever was left mounted under its dir.
func (d *Daemon) stop(t testing.TB) {
	select {
	case <-d.exited:
	default:
		if nss, err := d.Ctr("namespaces", "ls", "-q"); err == nil {
			for _, ns := range strings.Fields(nss) {
				tasks, _ := d.Ctr("-n", ns, "task", "ls", "-q")
				for _, id := range strings.Fields(tasks) {
					d.Ctr("-n", ns, "task", "resume", id)
					d.Ctr("-n", ns, "task", "delete", "-f", id)
				}
				cs, _ := d.Ctr("-n", ns, "containers", "ls", "-q")
				for _, id := range strings.Fields(cs) {
					d.Ctr("-n", ns, "containers", "rm", id)
				}
			}
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	unmountUnder(d.Dir)
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Errorf("containerd dir: %v", err)
	}
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		syscall.Unmount(p, syscall.MNT_DETACH)
	}
}
