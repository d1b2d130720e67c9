package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	archive "github.com/moby/go-archive"

	"snap/diff"
	"snap/internal/containerdtest"
	"snap/internal/fixtures"
	"snap/source"
	"snap/store"
)

// containerdWithBase starts a private containerd and imports the busybox
// base (docker's fixture image, saved by docker) into each namespace; it
// returns the daemon and the image's name there.
func containerdWithBase(t *testing.T, namespaces ...string) (*containerdtest.Daemon, string) {
	t.Helper()
	requireDocker(t) // the base image, and docker's commits the tests compare with
	d := containerdtest.Start(t)
	ar := filepath.Join(t.TempDir(), "base.tar")
	sh(t, fmt.Sprintf("%s save -o %s %s", fixtures.DockerBinary(), ar, fixtures.BaseImage))
	var name string
	for _, ns := range namespaces {
		name = d.Import(t, ns, ar)[0]
	}
	t.Setenv("CONTAINERD_ADDRESS", d.Address)
	return d, name
}

// nowish ignores the mtimes both sides set during the test run: a scenario
// run in two engines changes the same files at two moments. Times a
// scenario sets itself, and the base's, are still compared.
func nowish(since int64) func(d, s *Entry) {
	return func(d, s *Entry) {
		if d.MTime >= since && s.MTime >= since {
			d.MTime, s.MTime = 0, 0
		}
		// docker's init layer writes /etc/hosts, /etc/hostname and
		// /etc/resolv.conf, so the /etc its container copies up has the
		// init layer's fresh mtime; containerd has no init layer and keeps
		// the image's.
		if d.Name == "etc/" && d.Type == '5' && d.MTime >= since {
			d.MTime, s.MTime = 0, 0
		}
		if strings.HasPrefix(filepath.Base(d.Name), ".wh.") && d.Type == '0' {
			d.Link = "" // docker's stale whiteout link name: see TestDockerConformance
		}
	}
}

// withoutRun drops the /run directory runc creates as the mount point of
// the tmpfs containerd's default spec mounts there (the base has none):
// a real change of the container's filesystem, which docker's spec, with
// no /run mount, does not make.
func withoutRun(es []Entry) []Entry {
	return slices.DeleteFunc(es, func(e Entry) bool { return e.Name == "run/" })
}

// TestContainerdConformance: each of the 18 change kinds made in a
// containerd container (overlayfs snapshotter) and read through
// containerd:// gives, entry by entry, the layer docker commits for the
// same scenario on overlay2. Namespaces alternate between k8s.io and
// default. Some scenarios also run on the native snapshotter, read in
// rootfs mode, and must give the same filesystem once applied.
func TestContainerdConformance(t *testing.T) {
	d, image := containerdWithBase(t, "k8s.io", "default")
	t.Setenv("CONTAINERD_ADDRESS", d.Address) // for the snap commands
	root := filepath.Join(t.TempDir(), "store")
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Unix() - 1
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			c, err := fixtures.RunContainer("snap-ctd-conf-"+sc.name, fixtures.BaseImage, sc.script)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Remove()
			if sc.host != nil {
				sc.host(t, c.Upper)
			}
			var dockerLayer bytes.Buffer
			if _, err := c.CommitAndSave("snap-ctd-conf/"+sc.name+":ref", &dockerLayer); err != nil {
				t.Fatal(err)
			}
			defer fixtures.Docker("rmi", "-f", "snap-ctd-conf/"+sc.name+":ref")
			ns := []string{"k8s.io", "default"}[i%2]
			id := "conf-" + sc.name
			// Privileged: docker's default device rules let mknod make any
			// node; containerd's default spec does not.
			d.RunToEnd(t, ns, image, id, []string{"--privileged"}, "/bin/sh", "-c", sc.script)
			o, err := source.Containerd{Namespace: ns, ID: id, Address: d.Address}.Open(context.Background(), st)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			ov, ok := o.Changes.(diff.Overlay)
			if !ok {
				t.Fatalf("an overlayfs snapshot opened as %T", o.Changes)
			}
			if sc.host != nil {
				sc.host(t, ov.Upper)
			}
			de, se := entries(t, dockerLayer.Bytes()), withoutRun(entries(t, snapLayer(t, o.Changes)))
			for _, diff := range Compare(de, se, nowish(since)) {
				t.Error(diff)
			}
			checkSnapOnly(t, se, sc.snapOnly)
			// --squash: the normal commit's layers, flattened.
			squashEqualsLayers(t, root, "containerd://"+ns+"/"+id, "ctd-"+sc.name)

			t.Run("native", func(t *testing.T) {
				nid := id + "-native"
				d.RunToEnd(t, ns, image, nid, []string{"--privileged", "--snapshotter", "native"}, "/bin/sh", "-c", sc.script)
				o, err := source.Containerd{Namespace: ns, ID: nid, Address: d.Address}.Open(context.Background(), st)
				if err != nil {
					t.Fatal(err)
				}
				defer o.Close()
				rfs, ok := o.Changes.(diff.Rootfs)
				if !ok || len(rfs.Lowers) == 0 {
					t.Fatalf("a native snapshot opened as %#v", o.Changes)
				}
				if sc.host != nil {
					sc.host(t, rfs.Root)
				}
				snap := snapLayer(t, o.Changes)
				// Applied to the base, both layers give the same tree.
				// Directory mtimes are not compared, as in rootfs mode
				// against docker (see rootfsConformance).
				applied := func(layer []byte) []Entry {
					dst := t.TempDir()
					lowers := c.ImageLowers()
					for i := len(lowers) - 1; i >= 0; i-- {
						sh(t, "cp -a "+lowers[i]+"/. "+dst+"/")
					}
					if _, err := archive.ApplyLayer(dst, bytes.NewReader(layer)); err != nil {
						t.Fatalf("apply: %v", err)
					}
					tree, err := ReadTree(dst)
					if err != nil {
						t.Fatal(err)
					}
					return slices.DeleteFunc(tree, func(e Entry) bool { return e.Name == "run" })
				}
				ignore := func(d, s *Entry) {
					nowish(since)(d, s)
					if d.Type == '5' && s.Type == '5' {
						d.MTime, s.MTime = 0, 0
					}
				}
				for _, diff := range Compare(applied(dockerLayer.Bytes()), applied(snap), ignore) {
					t.Error(diff)
				}
				checkSnapOnly(t, entries(t, snap), sc.snapOnly)
			})
		})
	}
}

// ctdTask is a running containerd task whose counter file the test reads
// through /proc/PID/root.
type ctdTask struct {
	d      *containerdtest.Daemon
	ns, id string
	pid    int
}

const counterScript = "echo made-in-containerd > /etc/motd; rm -rf /usr/share/doc/base; i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done"

func runCounter(t *testing.T, d *containerdtest.Daemon, ns, image, id string, flags ...string) *ctdTask {
	t.Helper()
	d.Run(t, ns, image, id, flags, "sh", "-c", counterScript)
	out := d.MustCtr(t, "-n", ns, "task", "ls")
	task := &ctdTask{d: d, ns: ns, id: id}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == id {
			task.pid, _ = strconv.Atoi(f[1])
		}
	}
	if task.pid == 0 {
		t.Fatalf("no task %s in %q", id, out)
	}
	task.waitMoving(t)
	return task
}

func (c *ctdTask) counter() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/counter", c.pid))
	return strings.TrimSpace(string(b))
}

// waitMoving fails t unless the counter changes within a few seconds.
func (c *ctdTask) waitMoving(t *testing.T) {
	t.Helper()
	first := c.counter()
	for range 250 {
		if now := c.counter(); now != "" && now != first {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/%s: the counter is stuck at %q (task %s)", c.ns, c.id, first, c.d.TaskStatus(t, c.ns, c.id))
}

// events records containerd's task events until stop is called.
func events(t *testing.T, d *containerdtest.Daemon) (stop func() string) {
	t.Helper()
	var out bytes.Buffer
	p := exec.Command("ctr", "-a", d.Address, "events")
	p.Stdout = &out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // subscribed before the commit starts
	return func() string {
		time.Sleep(200 * time.Millisecond) // the last events delivered
		p.Process.Kill()
		p.Wait()
		return out.String()
	}
}

// pausedThenResumed picks the pause and resume events of one container
// out of ctr events' lines.
func pausedThenResumed(evs, id string) []string {
	var got []string
	for _, l := range strings.Split(evs, "\n") {
		for _, topic := range []string{"/tasks/paused", "/tasks/resumed"} {
			if strings.Contains(l, topic) && strings.Contains(l, `"`+id+`"`) {
				got = append(got, topic)
			}
		}
	}
	return got
}

// TestCommitContainerdContainer commits running containerd containers, one
// in k8s.io (a Kubernetes node's namespace) and one in default (nerdctl's,
// addressed with and without its name): paused for the walk (containerd's
// events say so), running afterwards (its counter moves), author, message
// and -c applied, the image chained
// onto the base's history with the container's command as created_by,
// runnable, and the base copied from containerd's content store once.
func TestCommitContainerdContainer(t *testing.T) {
	d, image := containerdWithBase(t, "k8s.io", "default")
	root := filepath.Join(t.TempDir(), "store")
	k8s := runCounter(t, d, "k8s.io", image, "web")
	def := runCounter(t, d, "default", image, "web")

	stop := events(t, d)
	mustSnap(t, root, "commit", "-a", "Ops", "-m", "from containerd", "-c", "ENV FROM=containerd", "containerd://k8s.io/web", "snap-e2e/fromctd:1")
	evs := stop()
	if got := pausedThenResumed(evs, "web"); !slices.Equal(got, []string{"/tasks/paused", "/tasks/resumed"}) {
		t.Errorf("containerd's events during the commit: %q, want paused then resumed\n%s", got, evs)
	}
	if st := d.TaskStatus(t, "k8s.io", "web"); st != "RUNNING" {
		t.Fatalf("task after the commit: %s", st)
	}
	k8s.waitMoving(t)
	def.waitMoving(t)

	h := mustSnap(t, root, "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "snap-e2e/fromctd:1")
	if want := "sh -c " + counterScript + "|from containerd\n|Imported from -\n"; h != want {
		t.Errorf("history\n got %q\nwant %q", h, want)
	}
	if a := mustSnap(t, root, "inspect", "--format", "{{.Author}} {{.Config.Env}}", "snap-e2e/fromctd:1"); a != "Ops [FROM=containerd]\n" {
		t.Errorf("author and -c: %q", a)
	}
	if got := mustSnap(t, root, "run", "--rm", "snap-e2e/fromctd:1", "sh", "-c", "cat /etc/motd; ls /usr/share/doc"); got != "made-in-containerd\n" {
		t.Errorf("snap run of the committed image: %q", got)
	}

	// default, with and without its name; -p=false leaves the task alone.
	stop = events(t, d)
	mustSnap(t, root, "commit", "containerd://web", "snap-e2e/fromctd:2")
	mustSnap(t, root, "commit", "-p=false", "containerd://default/web", "snap-e2e/fromctd:3")
	if got := pausedThenResumed(stop(), "web"); !slices.Equal(got, []string{"/tasks/paused", "/tasks/resumed"}) {
		t.Errorf("events of a commit and a -p=false commit: %q, want one pause and resume", got)
	}
	def.waitMoving(t)
	for _, tag := range []string{"snap-e2e/fromctd:2", "snap-e2e/fromctd:3"} {
		if got := mustSnap(t, root, "run", "--rm", tag, "cat", "/etc/motd"); got != "made-in-containerd\n" {
			t.Errorf("%s: %q", tag, got)
		}
	}
	// The base was copied once: three commits, one base.
	if n := strings.Count(mustSnap(t, root, "images"), "\n"); n != 5 {
		t.Errorf("images after three commits (base untagged + 3):\n%s", mustSnap(t, root, "images"))
	}
	diffOut := mustSnap(t, root, "diff", "containerd://k8s.io/web")
	for _, want := range []string{"C /etc\n", "C /etc/motd\n", "D /usr/share/doc/base\n", "A /tmp/counter\n"} {
		if !strings.Contains(diffOut, want) {
			t.Errorf("snap diff lacks %q:\n%s", want, diffOut)
		}
	}
}

// TestContainerdSourceFailures: an unknown container or namespace and a
// daemon that is not there are one line and exit 1; a commit interrupted
// while it walks resumes the task it paused; a snapshot whose dir was
// swapped for a symlink to a directory outside the snapshotter is refused
// and nothing is committed.
func TestContainerdSourceFailures(t *testing.T) {
	d, image := containerdWithBase(t, "k8s.io")
	root := filepath.Join(t.TempDir(), "store")
	for _, tc := range []struct{ ref, want string }{
		{"containerd://k8s.io/no-such-ctr", `no containerd container "no-such-ctr" in namespace "k8s.io"`},
		{"containerd://no-such-ns/web", `no containerd namespace "no-such-ns"`},
		{"containerd://no-such-ctr", `no containerd namespace "default"`},
	} {
		_, errs, code := snapCLI(t, root, "commit", tc.ref, "x:1")
		if code != 1 || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, %q; want one line with %q", tc.ref, code, errs, tc.want)
		}
	}
	t.Setenv("CONTAINERD_ADDRESS", "/nonexistent/containerd.sock")
	if _, errs, code := snapCLI(t, root, "commit", "containerd://x", "x:1"); code != 1 || !strings.Contains(errs, "no containerd at /nonexistent/containerd.sock") || strings.Count(errs, "\n") != 1 {
		t.Errorf("no daemon: exit %d, %q", code, errs)
	}
	t.Setenv("CONTAINERD_ADDRESS", d.Address)

	// Interrupted mid-walk: a big upper keeps the walk going.
	task := runCounter(t, d, "k8s.io", image, "big")
	for i := range 30 {
		sh(t, fmt.Sprintf("head -c 8000000 /dev/urandom > /proc/%d/root/tmp/big%d", task.pid, i))
	}
	bin := filepath.Join(t.TempDir(), "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	mustSnap(t, root, "commit", "containerd://k8s.io/big", "warm:1") // the base is now copied: the next commit pauses at once
	p := exec.Command(bin, "--root", root, "commit", "containerd://k8s.io/big", "interrupted:1")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	paused := false
	for i := 0; i < 500 && !paused; i++ {
		paused = d.TaskStatus(t, "k8s.io", "big") == "PAUSED"
	}
	p.Process.Signal(syscall.SIGINT)
	err := p.Wait()
	if st := d.TaskStatus(t, "k8s.io", "big"); st != "RUNNING" {
		t.Fatalf("after SIGINT during the commit the task is %s", st)
	}
	task.waitMoving(t)
	if !paused {
		t.Error("the commit never paused the task")
	}
	if err == nil {
		t.Log("the commit finished before the signal arrived")
	} else if _, _, code := snapCLI(t, root, "inspect", "interrupted:1"); code == 0 {
		t.Error("an interrupted commit left a tag")
	}

	// A snapshot swapped for a symlink out of the snapshotter.
	d.RunToEnd(t, "k8s.io", image, "swapped", nil, "sh", "-c", "echo x > /etc/x")
	mounts := d.MustCtr(t, "-n", "k8s.io", "snapshots", "mounts", "/mnt", "swapped")
	_, upper, ok := strings.Cut(mounts, "upperdir=")
	if upper, _, _ = strings.Cut(upper, ","); !ok || !strings.HasPrefix(upper, d.Root) {
		t.Fatalf("no upperdir in %q", mounts)
	}
	// The snapshot's dir, the upper's parent, becomes a symlink to a
	// tree outside: the mounts still name a path inside the snapshotter.
	snapDir := filepath.Dir(upper)
	secret := filepath.Join(t.TempDir(), "secret")
	sh(t, "mkdir -p "+secret+"/fs/etc && echo do-not-commit > "+secret+"/fs/etc/shadow-copy")
	if err := os.Rename(snapDir, snapDir+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, snapDir); err != nil {
		t.Fatal(err)
	}
	defer func() { os.Remove(snapDir); os.Rename(snapDir+".real", snapDir) }()
	_, errs, code := snapCLI(t, root, "commit", "containerd://k8s.io/swapped", "stolen:1")
	if code != 1 || !strings.Contains(errs, "is not a snapshot in") || strings.Count(errs, "\n") != 1 {
		t.Errorf("upper swapped for a symlink: exit %d, %q", code, errs)
	}
	if _, _, code := snapCLI(t, root, "inspect", "stolen:1"); code == 0 {
		t.Error("the refused commit left an image")
	}
}
