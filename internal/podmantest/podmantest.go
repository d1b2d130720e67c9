// Package podmantest runs a private podman for a test or benchmark: its own
// storage (overlay), run root, tmp dir, events file and API service in a
// temp dir, so it never touches the machine's podman storage. Everything is
// stopped, unmounted and removed when the test ends.
package podmantest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snap/internal/testenv"
)

// RunFlags are for every `podman run`: podman gives a root container
// 1048576 open files and 4194304 processes; where root cannot raise its hard
// limits (no CAP_SYS_RESOURCE, as in this CI's container) runc then fails
// with "error setting rlimit type 7 (6): operation not permitted". Limits
// below the hard ones work everywhere.
var RunFlags = []string{"--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--cap-add", "mknod"}

// Podman is one private podman with its API service running.
type Podman struct {
	Dir  string
	Sock string // unix:///..., as CONTAINER_HOST and DOCKER_HOST take it
	// Args run the podman CLI on this podman's storage: the binary, then
	// its global flags.
	Args []string

	t testing.TB
}

// Start runs a private podman service for t and stops it when t ends. Its
// config files are also set in CONTAINERS_CONF and CONTAINERS_STORAGE_CONF
// (for t), so a service snap starts itself sees the same containers;
// CONTAINER_HOST is unset. What the machine lacks skips t (fails it in CI).
func Start(t testing.TB) *Podman {
	t.Helper()
	testenv.Root(t, "podman's overlay storage")
	bin := testenv.Tool(t, "podman")
	dir, err := os.MkdirTemp("", "snap-podman-test-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{t: t, Dir: dir, Sock: "unix://" + filepath.Join(dir, "podman.sock")}
	root, runroot, tmp := filepath.Join(dir, "root"), filepath.Join(dir, "runroot"), filepath.Join(dir, "tmp")
	for _, d := range []string{root, runroot, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	storage := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", root, runroot)
	engine := fmt.Sprintf("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = %q\ntmp_dir = %q\n",
		filepath.Join(dir, "events.log"), tmp)
	for name, body := range map[string]string{"storage.conf": storage, "containers.conf": engine} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CONTAINERS_STORAGE_CONF", filepath.Join(dir, "storage.conf"))
	t.Setenv("CONTAINERS_CONF", filepath.Join(dir, "containers.conf"))
	os.Unsetenv("CONTAINER_HOST")
	p.Args = []string{bin, "--root", root, "--runroot", runroot, "--storage-driver", "overlay", "--tmpdir", tmp,
		"--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	svc := exec.Command(p.Args[0], append(p.Args[1:], "system", "service", "--time=0", p.Sock)...)
	var svcErr bytes.Buffer
	svc.Stderr = &svcErr
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Run("rm", "-a", "-f", "-t", "0")
		svc.Process.Kill()
		svc.Wait()
		// podman leaves its overlay mounts (the image's and a container's
		// merged dir) mounted; unmount before removing.
		exec.Command("sh", "-c", "grep -o ' "+dir+"[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l").Run()
		os.RemoveAll(dir)
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(strings.TrimPrefix(p.Sock, "unix://")); err == nil {
			break
		}
		if i == 300 {
			t.Fatalf("podman system service did not listen on %s: %s", p.Sock, svcErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// Command is the podman CLI on this podman's storage, run directly (never
// as a remote client, whatever CONTAINER_HOST says).
func (p *Podman) Command(args ...string) *exec.Cmd {
	c := exec.Command(p.Args[0], append(slices.Clone(p.Args[1:]), args...)...)
	c.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "CONTAINER_HOST=") })
	return c
}

// CommandLine is Command as one shell command line, for tools that time
// shell commands.
func (p *Podman) CommandLine(args ...string) string {
	q := make([]string, 0, len(p.Args)+len(args)+1)
	q = append(q, "env -u CONTAINER_HOST")
	for _, a := range append(slices.Clone(p.Args), args...) {
		q = append(q, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	return strings.Join(q, " ")
}

// Run runs podman with args and returns its stdout.
func (p *Podman) Run(args ...string) (string, error) {
	c := p.Command(args...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return string(out), fmt.Errorf("podman %v: %w: %s", args, err, stderr.String())
	}
	return string(out), nil
}

// Must is Run that fails the test on an error.
func (p *Podman) Must(args ...string) string {
	p.t.Helper()
	out, err := p.Run(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}
