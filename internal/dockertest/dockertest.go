// Package dockertest runs a private Docker Engine for a test: its own
// dockerd on a storage driver the test picks, with its own containerd, data
// root, exec root, pidfile and socket in a temp dir, so it never touches the
// machine's dockerd or containerd; the btrfs variant puts the data root on a
// loop-mounted btrfs made here. The busybox base image (fixtures.BaseImage)
// is imported into it. Everything is stopped, unmounted and removed when the
// test ends.
package dockertest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"snap/internal/fixtures"
	"snap/internal/testenv"
)

// Options chooses the daemon's storage.
type Options struct {
	// Driver is dockerd's --storage-driver: vfs, btrfs, overlay2,
	// fuse-overlayfs, overlay.
	Driver string
	// DataRoot is dockerd's --data-root; empty: a dir in the daemon's temp
	// dir. For btrfs the loop-mounted filesystem is mounted there.
	DataRoot string
	// BtrfsSize is the size of the btrfs filesystem; zero: 2 GiB. Sparse:
	// only what the layers use takes disk space.
	BtrfsSize int64
}

// Daemon is one running private dockerd.
type Daemon struct {
	Host     string // "unix://.../docker.sock", as DOCKER_HOST takes it
	DataRoot string
	Driver   string
	Dir      string // sockets, logs, exec root, and the data root unless given

	btrfsSize int64

	dockerd, containerd         *exec.Cmd
	dockerdExit, containerdExit chan struct{} // closed once waited for
}

// startTimeout bounds the wait for a starting daemon: dockerd answers in a
// few seconds even on a loaded machine; this only ends a hang.
const startTimeout = 90 * time.Second

// Start runs a private dockerd for the test (and its subtests) and stops it
// when the test ends. What it needs that the machine lacks skips the test
// (fails it in CI).
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	testenv.Root(t, "a private dockerd")
	dockerdBin := testenv.Tool(t, "dockerd")
	containerdBin := testenv.Tool(t, "containerd")
	testenv.Tool(t, "docker")
	switch o.Driver {
	case "btrfs":
		testenv.Tool(t, "mkfs.btrfs")
		testenv.Tool(t, "losetup")
	case "fuse-overlayfs":
		testenv.Tool(t, "fuse-overlayfs")
		_, err := os.Stat("/dev/fuse")
		testenv.NeedNoError(t, err, "/dev/fuse for fuse-overlayfs")
	case "":
		t.Fatal("dockertest: no storage driver given")
	}
	// A short path: a unix socket's name is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "snapd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: dir, Driver: o.Driver, DataRoot: o.DataRoot, Host: "unix://" + filepath.Join(dir, "docker.sock"), btrfsSize: o.BtrfsSize}
	if d.btrfsSize == 0 {
		d.btrfsSize = 2 << 30
	}
	if d.DataRoot == "" {
		d.DataRoot = filepath.Join(dir, "data")
	}
	t.Cleanup(func() {
		if err := d.stop(); err != nil {
			t.Errorf("dockertest: %v", err)
		}
	})
	if err := os.MkdirAll(d.DataRoot, 0o711); err != nil {
		t.Fatal(err)
	}
	if o.Driver == "btrfs" {
		if err := d.mountBtrfs(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.startContainerd(containerdBin); err != nil {
		t.Fatal(err)
	}
	if err := d.startDockerd(dockerdBin); err != nil {
		t.Fatal(err)
	}
	if err := d.importBase(); err != nil {
		t.Fatal(err)
	}
	return d
}

// Docker runs the docker client against this daemon and returns its
// stdout, with stderr in the error.
func (d *Daemon) Docker(args ...string) (string, error) {
	cmd := exec.Command(fixtures.DockerBinary(), append([]string{"-H", d.Host}, args...)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
	}
	return string(out), err
}

// Must is Docker, failing the test on an error.
func (d *Daemon) Must(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.Docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (d *Daemon) mountBtrfs() error {
	img := filepath.Join(d.Dir, "btrfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(img, d.btrfsSize); err != nil {
		return err
	}
	if out, err := exec.Command("mkfs.btrfs", "-q", img).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.btrfs: %w: %s", err, out)
	}
	// -o loop: the loop device goes when the filesystem is unmounted.
	if out, err := exec.Command("mount", "-o", "loop", img, d.DataRoot).CombinedOutput(); err != nil {
		return fmt.Errorf("mount btrfs: %w: %s", err, out)
	}
	return nil
}

func (d *Daemon) startContainerd(bin string) error {
	cfg := filepath.Join(d.Dir, "containerd.toml")
	sock := filepath.Join(d.Dir, "containerd.sock")
	// Its own root, state and sockets, and no CRI (it would want a CNI):
	// nothing shared with the machine's containerd.
	toml := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(d.Dir, "containerd/root"), filepath.Join(d.Dir, "containerd/state"), sock, sock+".ttrpc")
	if err := os.WriteFile(cfg, []byte(toml), 0o600); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(d.Dir, "containerd.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	d.containerd = exec.Command(bin, "--config", cfg)
	d.containerd.Stdout, d.containerd.Stderr = log, log
	if err := d.containerd.Start(); err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	d.containerdExit = make(chan struct{})
	go func() { d.containerd.Wait(); close(d.containerdExit) }()
	return waitFor(func() error {
		select {
		case <-d.containerdExit:
			return fmt.Errorf("containerd exited: %s", tail(log.Name()))
		default:
		}
		if _, err := os.Stat(sock); err != nil {
			return errRetry
		}
		return nil
	}, "containerd", log.Name())
}

func (d *Daemon) startDockerd(bin string) error {
	// An empty config file: the machine's /etc/docker/daemon.json is not
	// this daemon's.
	cfg := filepath.Join(d.Dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(d.Dir, "dockerd.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	d.dockerd = exec.Command(bin,
		"--config-file", cfg,
		"--data-root", d.DataRoot,
		"--exec-root", filepath.Join(d.Dir, "exec"),
		"--pidfile", filepath.Join(d.Dir, "docker.pid"),
		"-H", d.Host,
		"--containerd", filepath.Join(d.Dir, "containerd.sock"),
		"--storage-driver", d.Driver,
		"--bridge=none", "--iptables=false", "--ip-masq=false", "--userland-proxy=false",
	)
	d.dockerd.Stdout, d.dockerd.Stderr = log, log
	if err := d.dockerd.Start(); err != nil {
		return fmt.Errorf("dockerd: %w", err)
	}
	d.dockerdExit = make(chan struct{})
	go func() { d.dockerd.Wait(); close(d.dockerdExit) }()
	return waitFor(func() error {
		select {
		case <-d.dockerdExit:
			return fmt.Errorf("dockerd --storage-driver=%s exited: %s", d.Driver, tail(log.Name()))
		default:
		}
		out, err := d.Docker("info", "--format", "{{.Driver}}")
		if err != nil {
			return errRetry
		}
		if got := strings.TrimSpace(out); got != d.Driver {
			return fmt.Errorf("dockerd runs the %q driver, not %q", got, d.Driver)
		}
		return nil
	}, "dockerd", log.Name())
}

var errRetry = errors.New("not yet")

func waitFor(ready func() error, what, log string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if !errors.Is(err, errRetry) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v: %s", what, startTimeout, tail(log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// importBase imports the busybox base as fixtures.BaseImage.
func (d *Daemon) importBase() error {
	dir, err := os.MkdirTemp(d.Dir, "base-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := fixtures.Base(dir); err != nil {
		return err
	}
	cmd := exec.Command("sh", "-c", fmt.Sprintf("tar -C %s --numeric-owner -c . | %s -H %s import - %s", dir, fixtures.DockerBinary(), d.Host, fixtures.BaseImage))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("import base: %w: %s", err, out)
	}
	return nil
}

// stop ends dockerd (which stops its containers), then containerd, and
// removes what they left: mounts beneath the temp dir, the btrfs, the dir.
func (d *Daemon) stop() error {
	var errs []error
	if d.dockerd != nil && d.dockerd.Process != nil {
		d.dockerd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.dockerdExit:
		case <-time.After(60 * time.Second):
			d.dockerd.Process.Kill()
			<-d.dockerdExit
			errs = append(errs, errors.New("dockerd did not stop on SIGTERM within 60s; killed"))
		}
	}
	if d.containerd != nil && d.containerd.Process != nil {
		d.containerd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.containerdExit:
		case <-time.After(30 * time.Second):
			d.containerd.Process.Kill()
			<-d.containerdExit
		}
	}
	if err := unmountBeneath(d.Dir, d.DataRoot); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, err)
	}
	if d.DataRoot != filepath.Join(d.Dir, "data") && d.Driver == "btrfs" {
		// The caller's data root stays; only the filesystem on it goes.
		_ = os.Remove(d.DataRoot)
	}
	return errors.Join(errs...)
}

// unmountBeneath unmounts every mount at or beneath the given dirs, deepest
// first (a fuse-overlayfs or shm mount a killed daemon left, the btrfs).
func unmountBeneath(dirs ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescape(fields[4])
		for _, d := range dirs {
			if p == d || strings.HasPrefix(p, d+"/") {
				points = append(points, p)
				break
			}
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range slices.Compact(points) {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &n); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tail is the end of a log, for an error.
func tail(name string) string {
	b, _ := os.ReadFile(name)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}
