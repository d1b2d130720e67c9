package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	archive "github.com/moby/go-archive"

	"snap/diff"
	"snap/internal/dockertest"
	"snap/internal/fixtures"
	"snap/source"
	"snap/store"
)

// TestDockerDrivers commits the conformance scenarios with docker:// from
// containers of a private dockerd on each storage driver and compares each
// layer, entry by entry, with `docker commit` on the same daemon; snap diff
// with docker diff; and a running container's commit (author, message, -c,
// pause, history) with docker's, the container still running after it.
func TestDockerDrivers(t *testing.T) {
	for _, driver := range []string{"vfs", "btrfs", "fuse-overlayfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			d := dockertest.Start(t, dockertest.Options{Driver: driver})
			// snap's CLI and the fixtures' docker client both follow it.
			t.Setenv("DOCKER_HOST", d.Host)
			root := filepath.Join(t.TempDir(), "store")
			st, err := store.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			// The image's own files, to apply each layer to.
			var baseLayer bytes.Buffer
			if err := fixtures.SaveLastLayer(fixtures.BaseImage, &baseLayer); err != nil {
				t.Fatal(err)
			}
			base := filepath.Join(t.TempDir(), "base")
			if err := os.Mkdir(base, 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := archive.ApplyLayer(base, &baseLayer); err != nil {
				t.Fatal(err)
			}
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { driverScenario(t, d, st, root, base, sc) })
			}
			t.Run("running", func(t *testing.T) { driverRunning(t, d, root) })
		})
	}
}

// otherForm are the scenarios whose layer snap writes in another form than
// a naive differ (vfs, btrfs, fuse-overlayfs, overlay) and for the same
// filesystem: an opaque marker for a directory emptied of all its lower
// names where docker writes a whiteout per name, and an unchanged file that
// gained a hardlink carried whole, so the link survives.
var otherForm = map[string]bool{
	"delete-file": true, "delete-dir": true, "replace-dir": true, "rename": true,
	"deep-delete-recreate": true, "hardlinks": true, "type-change": true,
}

// applied is the tree the base dir and layer make together.
func applied(t *testing.T, base string, layer []byte) []Entry {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "applied")
	sh(t, "cp -a "+base+" "+dst)
	if _, err := archive.ApplyLayer(dst, bytes.NewReader(layer)); err != nil {
		t.Fatalf("apply: %v", err)
	}
	tree, err := ReadTree(dst)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// writeDir is where the container's own writes land on disk: the upper of
// an overlay driver, the container's layer dir of vfs and btrfs.
func writeDir(t *testing.T, d *dockertest.Daemon, name string) string {
	t.Helper()
	var cs []struct {
		ID          string `json:"Id"`
		GraphDriver struct{ Data map[string]string }
	}
	if err := json.Unmarshal([]byte(d.Must(t, "inspect", "--type", "container", name)), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("inspect %s: %v", name, err)
	}
	c := cs[0]
	if u := c.GraphDriver.Data["UpperDir"]; u != "" {
		return u
	}
	mountID, err := os.ReadFile(filepath.Join(d.DataRoot, "image", d.Driver, "layerdb/mounts", c.ID, "mount-id"))
	if err != nil {
		t.Fatal(err)
	}
	sub := map[string]string{"vfs": "vfs/dir", "btrfs": "btrfs/subvolumes"}[d.Driver]
	return filepath.Join(d.DataRoot, sub, string(mountID))
}

func driverScenario(t *testing.T, d *dockertest.Daemon, st *store.Store, root, base string, sc scenario) {
	name := "snap-drv-" + sc.name
	d.Docker("rm", "-f", name)
	d.Must(t, "run", "--name", name, "--network", "none", fixtures.BaseImage, "/bin/sh", "-c", sc.script)
	defer d.Docker("rm", "-f", name)
	if sc.host != nil {
		// A short name for the dir: a socket's path must fit 107 bytes.
		short := filepath.Join(os.TempDir(), fmt.Sprintf("snapdrv-%d", os.Getpid()))
		os.Remove(short)
		if err := os.Symlink(writeDir(t, d, name), short); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(short)
		sc.host(t, short)
	}
	var dockerLayer bytes.Buffer
	empty, err := fixtures.Container{Name: name}.CommitAndSave("snap-drv/"+sc.name+":ref", &dockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	o, err := source.Docker{Name: name, Host: d.Host}.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if o.Close != nil {
		defer o.Close()
	}
	if empty {
		res, err := diff.WriteLayer(context.Background(), io.Discard, o.Changes, diff.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Entries != 0 {
			t.Errorf("%T: docker saw no change, snap wrote %d entries", o.Changes, res.Entries)
		}
		if sc.name != "nothing" {
			t.Error("docker's commit is empty: the scenario changed nothing")
		}
		return
	}
	snap := snapLayer(t, o.Changes)
	de, se := entries(t, dockerLayer.Bytes()), entries(t, snap)
	// A naive differ's whiteouts carry mode 0 and the time of the commit;
	// snap's are docker's overlay2 whiteouts (0600, reproducible).
	whiteouts := func(d, s *Entry) {
		if strings.HasPrefix(filepath.Base(d.Name), ".wh.") && strings.HasPrefix(filepath.Base(s.Name), ".wh.") {
			d.Mode, d.MTime, s.Mode, s.MTime = 0, 0, 0, 0
		}
	}
	if diffs := Compare(de, se, whiteouts); len(diffs) > 0 {
		if !otherForm[sc.name] {
			for _, d := range diffs {
				t.Error(d)
			}
		} else {
			t.Logf("snap's layer says it in another form:\n%s", strings.Join(diffs, "\n"))
		}
	}
	// Whatever the form, the filesystem each layer makes must be the same.
	ignoreDirTime := func(d, s *Entry) {
		if d.Type == '5' && s.Type == '5' {
			d.MTime, s.MTime = 0, 0
		}
		// snap keeps a new hardlink to an image file a link; docker's
		// layer makes it a copy.
		if sc.name == "hardlinks" && s.Nlink > d.Nlink {
			d.Nlink, d.MTime = s.Nlink, s.MTime
		}
	}
	for _, d := range Compare(applied(t, base, dockerLayer.Bytes()), applied(t, base, snap), ignoreDirTime) {
		t.Error("applied: " + d)
	}
	checkSnapOnly(t, se, sc.snapOnly)

	sorted := func(s string) string {
		l := strings.Split(strings.TrimSpace(s), "\n")
		slices.Sort(l)
		return strings.Join(l, "\n")
	}
	want := d.Must(t, "diff", name)
	got := mustSnap(t, root, "diff", "docker://"+name)
	if sorted(got) != sorted(want) {
		t.Errorf("snap diff docker://%s\n%s\ndocker diff:\n%s", name, got, want)
	}
	// --squash: what the normal commit's layers flatten to, so none of the
	// init layer's stubs a vfs or btrfs container directory holds.
	squashEqualsLayers(t, root, "docker://"+name, "drv-"+sc.name)
}

// driverRunning commits a running container whose counter moves, with
// snap and with docker, and compares the two images' metadata and history.
func driverRunning(t *testing.T, d *dockertest.Daemon, root string) {
	name := "snap-drv-running"
	d.Docker("rm", "-f", name)
	d.Must(t, "run", "-d", "--name", name, "--network", "none", fixtures.BaseImage, "sh", "-c",
		"echo made > /etc/made; i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done")
	defer d.Docker("rm", "-f", name)
	counter := func() string {
		out, _ := d.Docker("exec", name, "cat", "/tmp/counter")
		return strings.TrimSpace(out)
	}
	waitMoving := func(what string) {
		t.Helper()
		first := counter()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if c := counter(); c != "" && c != first {
				return
			}
		}
		t.Fatalf("%s: the container's counter stays at %q", what, first)
	}
	waitMoving("before the commit")
	since := time.Now().Add(-time.Second).Unix()
	args := []string{"-a", "Ops <ops@example.com>", "-m", "from " + d.Driver, "-c", "ENV MODE=golden", "-c", `CMD ["cat", "/etc/made"]`}
	mustSnap(t, root, append(append([]string{"commit"}, args...), "--to-docker", "docker://"+name, "snap-drv/snap:1")...)
	defer d.Docker("rmi", "-f", "snap-drv/snap:1")
	events := d.Must(t, "events", "--since", fmt.Sprint(since), "--until", fmt.Sprint(time.Now().Unix()+1),
		"--filter", "container="+name, "--filter", "event=pause", "--filter", "event=unpause", "--format", "{{.Action}}")
	if events != "pause\nunpause\n" {
		t.Errorf("engine events during the commit: %q, want pause then unpause", events)
	}
	if st := strings.TrimSpace(d.Must(t, "inspect", "-f", "{{.State.Status}} paused={{.State.Paused}}", name)); st != "running paused=false" {
		t.Fatalf("container after commit: %s", st)
	}
	waitMoving("after the commit")

	d.Must(t, append(append([]string{"commit"}, args...), name, "snap-drv/docker:1")...)
	defer d.Docker("rmi", "-f", "snap-drv/docker:1")
	meta := "{{.Author}}|{{json .Config.Env}}|{{json .Config.Cmd}}|{{len .RootFS.Layers}}"
	if s, dk := d.Must(t, "inspect", "-f", meta, "snap-drv/snap:1"), d.Must(t, "inspect", "-f", meta, "snap-drv/docker:1"); s != dk {
		t.Errorf("image config\nsnap   %s docker %s", s, dk)
	}
	hist := "{{.CreatedBy}}|{{.Comment}}"
	sh := mustSnap(t, root, "history", "--no-trunc", "--format", hist, "snap-drv/snap:1")
	if dh := d.Must(t, "history", "--no-trunc", "--format", hist, "snap-drv/docker:1"); sh != dh {
		t.Errorf("snap history\n%s\ndocker history:\n%s", sh, dh)
	}
	if out := d.Must(t, "run", "--rm", "--network", "none", "snap-drv/snap:1"); out != "made\n" {
		t.Errorf("docker run of snap's image: %q", out)
	}
}
