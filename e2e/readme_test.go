package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"snap/internal/registrytest"
)

// walkthrough is the README section whose ```sh blocks must run as written.
const walkthrough = "## By hand: containers, directories, registries"

// shBlocks returns the ```sh blocks of the README section under heading.
func shBlocks(t *testing.T, readme, heading string) []string {
	t.Helper()
	return fencedBlocks(t, readme, heading, "sh")
}

// TestReadmeWalkthrough runs the README's golden-image walk-through as a
// reader would: each ```sh block with sh -e, in one directory holding
// busybox-rootfs.tar.gz, snap on PATH, a fresh SNAP_ROOT; the docker and
// skopeo lines run against the real dockerd. A command that hangs fails the
// test after a bound.
func TestReadmeWalkthrough(t *testing.T) {
	requireRoot(t)
	_, dockerErr := exec.LookPath("docker")
	_, skopeoErr := exec.LookPath("skopeo")
	require(t, dockerErr == nil && exec.Command("docker", "version").Run() == nil, "a running dockerd")
	require(t, skopeoErr == nil, "skopeo")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := shBlocks(t, string(readme), walkthrough)
	if len(blocks) != 3 {
		t.Fatalf("README %q: %d ```sh blocks, want 3 (snap's containers, a directory, a registry)", walkthrough, len(blocks))
	}
	// The walk-through loads golden:2 into docker: never over someone's.
	if exec.Command("docker", "image", "inspect", "golden:2").Run() == nil {
		t.Fatal("docker already has an image golden:2; the walk-through would replace it")
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "golden:2").Run() })

	e, reg, run := readmeEnv(t)
	t.Cleanup(func() { exec.Command("docker", "rmi", reg.Ref("golden:3")).Run() })
	lines := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

	// snap's own containers: provision, commit, run the image's command.
	out := run(blocks[0])
	if !strings.Contains(out, "\ngolden v1\n") {
		t.Errorf("snap run --rm golden:1 did not print the image's motd:\n%s", out)
	}
	if !regexp.MustCompile(`sleep 600 +[0-9.]+[kM]?B +golden v1\n`).MatchString(out) {
		t.Errorf("snap history golden:1 does not show the commit:\n%s", out)
	}
	if m := e.mounts(); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}

	// A directory: v1, v2 on top, run by snap and by docker, read by skopeo,
	// and the same ID twice with SOURCE_DATE_EPOCH.
	out = run(blocks[1])
	// v2 rewrites the motd at the same size within the second of v1's
	// commit: metadata alone would call it unchanged (docker's sameFsTime).
	if n := strings.Count(out, "\ngolden v2\n"); n != 2 || regexp.MustCompile(`(?m)^golden v1$`).MatchString(out) {
		t.Errorf("golden:2 printed \"golden v2\" %d times, want 2 (snap run, docker run), and never v1:\n%s", n, out)
	}
	if !strings.Contains(out, "Loaded image: golden:2\n") {
		t.Errorf("docker load did not load golden:2:\n%s", out)
	}
	if !strings.Contains(out, `"Layers"`) {
		t.Errorf("skopeo inspect printed no layers:\n%s", out)
	}
	l := lines(out)
	if a, b := l[len(l)-2], l[len(l)-1]; !strings.HasPrefix(a, "sha256:") || a != b {
		t.Errorf("SOURCE_DATE_EPOCH commits gave %q and %q, want the same image ID", a, b)
	}
	if m := e.mounts(); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}

	// The registry: push, commit --push, and docker pulls and runs it.
	before := reg.Requests("PUT", uploadsRE)
	out = run(blocks[2])
	if !strings.HasSuffix(out, "\ngolden v3\n") {
		t.Errorf("docker run of the pushed golden:3 did not print its motd:\n%s", out)
	}
	// golden:2: three layers and its config; then golden:3: its new layer and
	// its config, nothing of golden:2 again.
	if n := reg.Requests("PUT", uploadsRE) - before; n != 6 {
		t.Errorf("the walk-through uploaded %d blobs, want 6", n)
	}
}

// readmeEnv is a directory as the README's reader has it: a fresh store,
// busybox-rootfs.tar.gz, snap on PATH, a registry named by REGISTRY; run
// runs one ```sh block there with sh -e.
func readmeEnv(t *testing.T) (*env, *registrytest.Registry, func(string) string) {
	e := &env{t: t, dir: t.TempDir()}
	e.root = filepath.Join(e.dir, "store")
	// The registry the walk-through pushes to; REGISTRY names it as the
	// README says.
	reg := registrytest.Start(t, registrytest.Options{})
	e.vars = []string{"REGISTRY=" + reg.Host, "DOCKER_CONFIG=" + filepath.Join(e.dir, "docker-config")}
	t.Cleanup(func() {
		ids, _, _ := e.snap("ps", "-a", "-q")
		for _, id := range strings.Fields(ids) {
			e.snap("rm", "-f", id)
		}
	})
	b, err := os.ReadFile(baseTar)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "busybox-rootfs.tar.gz"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(block string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-e", "-c", block)
		cmd.Env, cmd.Dir = e.environ(), e.dir
		// Its own process group: a hang is killed with everything it started.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("still running after 3 minutes:\n%s\nstdout:\n%s\nstderr:\n%s", block, out.String(), errb.String())
		}
		if err != nil {
			t.Fatalf("%v:\n%s\nstdout:\n%s\nstderr:\n%s", err, block, out.String(), errb.String())
		}
		return out.String()
	}
	return e, reg, run
}

// TestReadmeCapture runs the README's capture as a reader would: the
// ```yaml block saved as capture.yaml, then the ```sh block, against a real
// registry and dockerd.
func TestReadmeCapture(t *testing.T) {
	requireRoot(t)
	require(t, exec.Command("docker", "version").Run() == nil, "a running dockerd")
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const heading = "## Golden images, step by step"
	yml := fencedBlocks(t, string(readme), heading, "yaml")
	blocks := shBlocks(t, string(readme), heading)
	if len(yml) != 1 || len(blocks) != 1 {
		t.Fatalf("README %q: %d yaml and %d sh blocks, want one of each", heading, len(yml), len(blocks))
	}
	e, reg, run := readmeEnv(t)
	t.Cleanup(func() { exec.Command("docker", "rmi", reg.Ref("golden/web:latest")).Run() })
	if err := os.WriteFile(filepath.Join(e.dir, "capture.yaml"), []byte(yml[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(blocks[0])
	l := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	// The import's ID, then the captures': the first two the same (nothing
	// made), then another.
	if len(l) < 4 || !strings.HasPrefix(l[1], "sha256:") || l[1] != l[2] || l[3] == l[2] || !strings.HasPrefix(l[3], "sha256:") {
		t.Errorf("the three captures printed %q", l)
	}
	if !regexp.MustCompile(`(?m)^C /etc/motd  \(10 B\)$`).MatchString(out) {
		t.Errorf("snap diff golden/web:v1 golden/web:latest did not show the motd:\n%s", out)
	}
	if n := strings.Count(out, "\ngolden v2\n"); n != 2 {
		t.Errorf("golden v2 printed %d times, want 2 (snap run, docker run):\n%s", n, out)
	}
}

// fencedBlocks returns the ```lang blocks of the README section under heading.
func fencedBlocks(t *testing.T, readme, heading, lang string) []string {
	t.Helper()
	_, sec, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README: no section %q", heading)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var blocks []string
	for {
		_, rest, ok := strings.Cut(sec, "\n```"+lang+"\n")
		if !ok {
			return blocks
		}
		block, after, ok := strings.Cut(rest, "\n```\n")
		if !ok {
			t.Fatalf("README %q: a ```%s block is not closed", heading, lang)
		}
		blocks = append(blocks, block+"\n")
		sec = after
	}
}
