package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNoMountLeftBehind: a container's overlay rootfs is mounted only while
// it runs, as docker's is: after run --rm, after a foreground run, after a
// detached container exits by itself (nobody's snap command is around then),
// after stop, kill and rm -f. start mounts it again, and a container that
// is not mounted still commits.
func TestNoMountLeftBehind(t *testing.T) {
	e := newEnv(t)
	none := func(after string) {
		t.Helper()
		if m := e.mounts(); len(m) > 0 {
			t.Errorf("after %s: still mounted: %v", after, m)
		}
	}
	one := func(during string) {
		t.Helper()
		if m := e.mounts(); len(m) != 1 {
			t.Errorf("during %s: mounts %v, want the rootfs", during, m)
		}
	}

	e.must("run", "--rm", "base:1", "true")
	none("run --rm")
	e.must("run", "--name", "fg", "base:1", "sh", "-c", "echo fg > /f")
	none("a foreground run")
	if s := e.status("fg"); !strings.HasPrefix(s, "Exited (0)") {
		t.Errorf("fg: status %q", s)
	}

	e.must("run", "-d", "--name", "det", "base:1", "sh", "-c", "echo det > /f; exit 3")
	e.waitStatus("det", "Exited (3)") // the exit code too: a monitor saw it
	none("a detached container exited by itself")
	e.must("run", "-d", "--rm", "--name", "detrm", "base:1", "true")
	for deadline := time.Now().Add(cmdTimeout); e.status("detrm") != ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("detached --rm container still there: %s", e.must("ps", "-a"))
		}
	}
	none("a detached --rm container exited by itself")

	// A shell as init ignores SIGTERM unless it traps it. The stop waits
	// for the trap: a SIGTERM that comes before would end libcontainer's
	// init before it runs the shell (exit 2).
	e.must("run", "-d", "--name", "long", "base:1", "sh", "-c", "trap 'exit 0' TERM; touch /trapped; while true; do sleep 0.1; done")
	one("a detached run")
	for deadline := time.Now().Add(cmdTimeout); ; time.Sleep(50 * time.Millisecond) {
		if _, _, code := e.snap("exec", "long", "test", "-e", "/trapped"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the trap is never set")
		}
	}
	e.must("stop", "long")
	none("stop")
	if s := e.status("long"); !strings.HasPrefix(s, "Exited (0)") {
		t.Errorf("long after stop: status %q", s)
	}
	e.must("start", "long")
	one("start")
	e.must("kill", "long")
	none("kill")
	e.must("start", "long")
	e.must("stop", "long") // stop of a stopped container does nothing, as docker's
	e.must("stop", "long")
	none("stop twice")
	e.must("start", "long")
	e.must("rm", "-f", "long")
	none("rm -f")

	// Start again mounts and works; the exited containers commit unmounted.
	if out := e.must("start", "-a", "fg"); out != "" {
		t.Errorf("start -a fg printed %q", out)
	}
	none("start -a")
	e.must("start", "det")
	e.waitStatus("det", "Exited (3)")
	none("a restarted detached container exited")
	for _, c := range []string{"fg", "det"} {
		e.must("commit", c, c+":1")
		if out := e.must("run", "--rm", c+":1", "cat", "/f"); out != c+"\n" {
			t.Errorf("the commit of %s holds %q", c, out)
		}
	}
	none("the commits")
}

// TestExecForwardsSignals sends real signals to a real `snap exec`: the
// process in the container gets them, and snap exits with its status.
func TestExecForwardsSignals(t *testing.T) {
	e := newEnv(t)
	e.must("run", "-d", "--name", "c1", "base:1", "sleep", "600")
	tests := []struct {
		sig    syscall.Signal
		script string
		want   int
	}{
		{syscall.SIGINT, "echo ready; exec sleep 601", 130},
		{syscall.SIGTERM, "echo ready; exec sleep 602", 143},
		{syscall.SIGINT, "trap 'exit 7' INT; echo ready; sleep 603 & wait", 7}, // handled, not just killed
	}
	for _, tc := range tests {
		t.Run(tc.sig.String()+"/"+strconv.Itoa(tc.want), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "exec", "c1", "sh", "-c", tc.script)
			cmd.Env = e.environ()
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if line != "ready\n" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("exec printed %q (%v)", line, err)
			}
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			if ctx.Err() != nil {
				t.Fatalf("snap exec ignored %v: still running after 30s", tc.sig)
			}
			if got := cmd.ProcessState.ExitCode(); got != tc.want {
				t.Errorf("snap exec exit %d after %v, want %d", got, tc.sig, tc.want)
			}
		})
	}
}

// TestRmiImageInUse: an image a container was created from is not removed
// (docker's conflict errors, nothing changed); -f only untags it, so it
// survives prune as <none> and its container still runs and commits.
func TestRmiImageInUse(t *testing.T) {
	e := newEnv(t)
	img := strings.TrimPrefix(strings.TrimSpace(e.must("inspect", "-f", "{{.Id}}", "base:1")), "sha256:")
	id := strings.TrimSpace(e.must("create", "--name", "c1", "base:1", "sleep", "600"))
	index := func() string {
		b, err := os.ReadFile(filepath.Join(e.root, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	refused := func(want string, args ...string) {
		t.Helper()
		before := index()
		out, errs, code := e.snap(args...)
		if code != 1 || out != "" || errs != "snap: "+want+"\n" {
			t.Errorf("snap %q: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, out, errs, want)
		}
		if index() != before {
			t.Errorf("snap %q changed the index", args)
		}
	}
	refused(`conflict: unable to remove repository reference "base:1" (must force) - container `+id[:12]+` is using its referenced image `+img[:12], "rmi", "base:1")
	refused("conflict: unable to delete "+img[:12]+" (must be forced) - image is being used by stopped container "+id[:12], "rmi", img[:12])
	e.must("start", "c1")
	refused("conflict: unable to delete "+img[:12]+" (cannot be forced) - image is being used by running container "+id[:12], "rmi", "-f", img[:12])
	refused(`conflict: unable to remove repository reference "base:1" (must force) - container `+id[:12]+` is using its referenced image `+img[:12], "rmi", "base:1")

	// Its only name, a running container: docker untags and keeps the image.
	if out := e.must("rmi", "-f", "base:1"); out != "Untagged: base:1\n" {
		t.Errorf("rmi -f printed %q", out)
	}
	if out := e.must("images"); !strings.Contains(out, "<none>       <none>    "+img[:12]) {
		t.Errorf("the image is not kept untagged:\n%s", out)
	}
	e.must("prune")
	e.must("exec", "c1", "sh", "-c", "echo provisioned > /etc/motd")
	e.must("commit", "c1", "golden:1")
	if out := e.must("run", "--rm", "golden:1", "cat", "/etc/motd"); out != "provisioned\n" {
		t.Errorf("the commit after rmi -f and prune holds %q", out)
	}
	// Stopped, its layers still there: it starts again, and commits again.
	e.must("stop", "-t", "0", "c1")
	e.must("prune")
	e.must("start", "c1")
	e.must("commit", "c1", "golden:2")
	e.must("rm", "-f", "c1")
	// No container left: the untagged image goes as any other.
	if out := e.must("rmi", img[:12]); out != "Deleted: sha256:"+img+"\n" {
		t.Errorf("rmi of the unused image printed %q", out)
	}
}

// TestContainerNames: names follow docker's rule ([a-zA-Z0-9][a-zA-Z0-9_.-]+);
// any other is a usage error naming it quoted, and nothing is created.
func TestContainerNames(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		ok   string // the name it gets; "" when refused
	}{
		{"web-1.a_b", "web-1.a_b"},
		{"/web2", "web2"}, // docker takes one leading slash
		{"ab", "ab"},
		{"bad/name", ""},
		{"line\nbreak", ""},
		{"", ""},
		{"a", ""},
		{"-dash", ""},
		{".dot", ""},
		{"_under", ""},
		{"sp ace", ""},
		{"colon:1", ""},
		{"ünï", ""},
		{"//two", ""},
		{"tab\t", ""},
	}
	for _, tc := range tests {
		for _, cmd := range []string{"create", "run"} {
			t.Run(cmd+"/"+strconv.Quote(tc.name), func(t *testing.T) {
				e := e.on(t)
				out, errs, code := e.snap(cmd, "--name", tc.name, "base:1", "true")
				if tc.ok != "" {
					if code != 0 {
						t.Fatalf("refused: exit %d: %s", code, errs)
					}
					e.must("rm", "-f", tc.ok)
					return
				}
				if code != 2 || out != "" || !strings.HasPrefix(errs, "snap: ") || strings.Count(errs, "\n") != 1 ||
					!strings.Contains(errs, strconv.Quote(tc.name)) {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line naming %s", code, out, errs, strconv.Quote(tc.name))
				}
				if ids := e.must("ps", "-a", "-q"); ids != "" {
					t.Errorf("a container was created: %s", ids)
				}
			})
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(e.root, "containers")); len(ents) != 0 {
		t.Errorf("left in the store: %v", ents)
	}
}
