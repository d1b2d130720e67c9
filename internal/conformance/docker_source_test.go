package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"snap/internal/fixtures"
)

func containerState(t *testing.T, name string) string {
	t.Helper()
	return strings.TrimSpace(cmd(t, fixtures.DockerBinary(), "inspect", "-f", "{{.State.Status}} paused={{.State.Paused}}", name))
}

// TestCommitDockerContainer commits a running docker container with
// docker://: paused for the walk (the engine's events say so), running
// afterwards, the image chained onto docker's base history, and runnable
// by docker through --to-docker.
func TestCommitDockerContainer(t *testing.T) {
	requireDocker(t)
	name := "snap-conf-docker-src"
	fixtures.Docker("rm", "-f", name)
	cmd(t, fixtures.DockerBinary(), "run", "-d", "--name", name, "--network", "none", fixtures.BaseImage,
		"sh", "-c", "echo made-in-docker > /etc/motd; rm -rf /usr/share/doc/base; mkdir /work; echo w > /work/f; exec sleep 1000")
	defer fixtures.Docker("rm", "-f", name)
	time.Sleep(500 * time.Millisecond)
	root := filepath.Join(t.TempDir(), "store")
	since := time.Now().Add(-time.Second).Unix()
	mustSnap(t, root, "commit", "-a", "Ops", "-m", "from docker", "--to-docker", "docker://"+name, "snap-e2e/fromdocker:1")
	defer fixtures.Docker("rmi", "-f", "snap-e2e/fromdocker:1")
	if st := containerState(t, name); st != "running paused=false" {
		t.Fatalf("container after commit: %s", st)
	}
	events := cmd(t, fixtures.DockerBinary(), "events", "--since", fmt.Sprint(since), "--until", fmt.Sprint(time.Now().Unix()+1),
		"--filter", "container="+name, "--filter", "event=pause", "--filter", "event=unpause", "--format", "{{.Action}}")
	if events != "pause\nunpause\n" {
		t.Errorf("engine events during the commit: %q, want pause then unpause", events)
	}
	h := mustSnap(t, root, "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "snap-e2e/fromdocker:1")
	want := "sh -c echo made-in-docker > /etc/motd; rm -rf /usr/share/doc/base; mkdir /work; echo w > /work/f; exec sleep 1000|from docker\n|Imported from -\n"
	if h != want {
		t.Errorf("history\n got %q\nwant %q", h, want)
	}
	dh := cmd(t, fixtures.DockerBinary(), "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "snap-e2e/fromdocker:1")
	if dh != h {
		t.Errorf("docker history of the --to-docker image\n%s\nsnap:\n%s", dh, h)
	}
	got := cmd(t, fixtures.DockerBinary(), "run", "--rm", "--network", "none", "snap-e2e/fromdocker:1", "sh", "-c", "cat /etc/motd /work/f; ls /usr/share/doc")
	if got != "made-in-docker\nw\n" {
		t.Errorf("docker run of the committed image: %q", got)
	}
	// And under snap's own runtime.
	if got := mustSnap(t, root, "run", "--rm", "snap-e2e/fromdocker:1", "sh", "-c", "cat /etc/motd /work/f"); got != "made-in-docker\nw\n" {
		t.Errorf("snap run of the committed image: %q", got)
	}
	// The engine's base was exported once: a second commit finds it by ID.
	mustSnap(t, root, "commit", "-m", "again", "docker://"+name, "snap-e2e/fromdocker:2")
	if n := strings.Count(mustSnap(t, root, "images"), "\n"); n != 4 {
		t.Errorf("images after two commits (base untagged + 2):\n%s", mustSnap(t, root, "images"))
	}
}

// TestDockerSourceFailures: unknown container, an engine that is not
// running, and a commit interrupted by SIGINT, which must resume the
// container it paused.
func TestDockerSourceFailures(t *testing.T) {
	requireDocker(t)
	root := filepath.Join(t.TempDir(), "store")
	if _, errs, code := snapCLI(t, root, "commit", "docker://no-such-container-xyz", "x:1"); code != 1 || !strings.Contains(errs, "no-such-container-xyz") || strings.Count(errs, "\n") != 1 {
		t.Errorf("unknown container: exit %d, %q", code, errs)
	}
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	if _, errs, code := snapCLI(t, root, "commit", "docker://x", "x:1"); code != 1 || !strings.Contains(errs, "not answering") {
		t.Errorf("engine down: exit %d, %q", code, errs)
	}
	os.Unsetenv("DOCKER_HOST")

	name := "snap-conf-docker-sigint"
	fixtures.Docker("rm", "-f", name)
	cmd(t, fixtures.DockerBinary(), "run", "-d", "--name", name, "--network", "none", fixtures.BaseImage, "sleep", "1000")
	defer fixtures.Docker("rm", "-f", name)
	c, err := fixtures.InspectContainer(name)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 { // a big upper, so the commit is still walking when interrupted
		sh(t, fmt.Sprintf("head -c 8000000 /dev/urandom > %s/big%d", c.Upper, i))
	}
	bin := filepath.Join(t.TempDir(), "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	mustSnap(t, root, "commit", "docker://"+name, "warm:1") // the base is now cached: the next commit pauses at once
	p := exec.Command(bin, "--root", root, "commit", "docker://"+name, "interrupted:1")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && !strings.Contains(containerState(t, name), "paused=true"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	p.Process.Signal(syscall.SIGINT)
	err = p.Wait()
	if st := containerState(t, name); st != "running paused=false" {
		t.Fatalf("after SIGINT during the commit the container is %s", st)
	}
	if err == nil {
		t.Log("the commit finished before the signal arrived")
	} else if _, _, code := snapCLI(t, root, "inspect", "interrupted:1"); code == 0 {
		t.Error("an interrupted commit left a tag")
	}
}
