package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/go-archive/compression"

	"snap/internal/fixtures"
	"snap/store"
)

// volumePrep makes /data in the busybox base as a test image's VOLUME:
// owners, modes, a hardlink, a symlink out of the rootfs, a fifo, a device.
const volumePrep = `mkdir -p /data/sub && echo hello > /data/a && chown 1000:2000 /data/a && chmod 0640 /data/a &&
ln -s /etc/shadow /data/shadow && ln /data/a /data/hard && mknod /data/null c 1 3 && mkfifo /data/fifo &&
echo x > /data/sub/f && chmod 4755 /data/sub/f && chown 5:6 /data/sub && chmod 2750 /data/sub && chown 7:8 /data && chmod 0711 /data`

// volumeRun lists /data as the container sees it, then writes in and out
// of the volume.
const volumeRun = `cd /data && stat -c '%n %u:%g %a %F %t,%T %h' . * sub/* && cat a sub/f && echo n > /data/new && echo o > /other`

// layerNames lists the entries of a layer tar (compressed or not).
func layerNames(t *testing.T, r io.Reader) []string {
	t.Helper()
	dec, err := compression.DecompressStream(r)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	var names []string
	tr := tar.NewReader(dec)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// snapTopLayer lists the entries of the top layer of a snap image.
func (e *env) snapTopLayer(t *testing.T, ref string) []string {
	t.Helper()
	st, err := store.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup(ref)
	if err != nil {
		t.Fatal(err)
	}
	layers := img.Manifest.Layers
	rc, err := st.OpenBlob(layers[len(layers)-1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return layerNames(t, rc)
}

type mountPoint struct {
	Type, Name, Source, Destination, Driver, Mode, Propagation string
	RW                                                         bool
}

func parseMounts(t *testing.T, out string) []mountPoint {
	t.Helper()
	var ms []mountPoint
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		t.Fatalf("mounts %q: %v", out, err)
	}
	return ms
}

var volumeName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestAnonymousVolumeAsDocker: the same image (the busybox base with a
// VOLUME /data holding files) and the same run in docker and in snap: the
// container sees the image's files in the volume alike (docker's copy-up),
// inspect shows the same .Mounts, the commit holds what was written outside
// the volume and nothing under it, and keeps the VOLUME; rm removes snap's
// volume.
func TestAnonymousVolumeAsDocker(t *testing.T) {
	e := newEnv(t)
	requireDocker(t)
	p := "snap-e2e-vol-" + strconv.Itoa(os.Getpid())
	defer fixtures.Docker("rm", "-f", "-v", p+"-prep", p+"-run")
	defer fixtures.Docker("rmi", "-f", p+"-img:1", p+"-out:1")
	var dockerOut string
	for _, step := range []struct {
		args []string
		out  *string
	}{
		{[]string{"run", "--name", p + "-prep", "--network", "none", fixtures.BaseImage, "sh", "-c", volumePrep}, nil},
		{[]string{"commit", "-c", "VOLUME /data", p + "-prep", p + "-img:1"}, nil},
		{[]string{"run", "--name", p + "-run", "--network", "none", p + "-img:1", "sh", "-c", volumeRun}, &dockerOut},
	} {
		out, err := fixtures.Docker(step.args...)
		if err != nil {
			t.Fatalf("docker %q: %v", step.args, err)
		}
		if step.out != nil {
			*step.out = out
		}
	}
	dockerMounts, err := fixtures.Docker("inspect", "-f", "{{json .Mounts}}", p+"-run")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixtures.Docker("commit", p+"-run", p+"-out:1"); err != nil {
		t.Fatal(err)
	}
	var dockerLayer bytes.Buffer
	if err := fixtures.SaveLastLayer(p+"-out:1", &dockerLayer); err != nil {
		t.Fatal(err)
	}
	dockerVolumes, err := fixtures.Docker("inspect", "-f", "{{json .Config.Volumes}}", p+"-out:1")
	if err != nil {
		t.Fatal(err)
	}

	e.must("run", "--name", "prep", "base:1", "sh", "-c", volumePrep)
	e.must("commit", "-c", "VOLUME /data", "prep", "img:1")
	snapOut := e.must("run", "--name", "run", "img:1", "sh", "-c", volumeRun)
	if snapOut != dockerOut || !strings.Contains(snapOut, "sub/f 0:0 4755") {
		t.Errorf("/data in snap:\n%s\nin docker:\n%s", snapOut, dockerOut)
	}
	e.must("commit", "run", "out:1")
	snapNames, dockerNames := e.snapTopLayer(t, "out:1"), layerNames(t, &dockerLayer)
	if !slices.Equal(snapNames, dockerNames) || !slices.Equal(snapNames, []string{"other"}) {
		t.Errorf("the commit's layer: snap %q, docker %q, want [other]", snapNames, dockerNames)
	}
	if got := e.must("inspect", "-f", "{{json .Config.Volumes}}", "out:1"); got != dockerVolumes {
		t.Errorf("committed Volumes: snap %q, docker %q", got, dockerVolumes)
	}
	sm, dm := parseMounts(t, e.must("inspect", "-f", "{{json .Mounts}}", "run")), parseMounts(t, dockerMounts)
	if len(sm) != 1 || len(dm) != 1 {
		t.Fatalf(".Mounts in snap %+v, in docker %+v: want one each", sm, dm)
	}
	if !volumeName.MatchString(sm[0].Name) || filepath.Base(sm[0].Source) != sm[0].Name {
		t.Errorf("snap's volume %+v: want a name of 64 hex digits, its directory's", sm[0])
	}
	vol := sm[0].Source
	if b, err := os.ReadFile(filepath.Join(vol, "new")); err != nil || string(b) != "n\n" {
		t.Errorf("%s/new: %q %v", vol, b, err)
	}
	sm[0].Name, sm[0].Source, dm[0].Name, dm[0].Source = "", "", "", ""
	if sm[0] != dm[0] {
		t.Errorf(".Mounts in snap %+v, in docker %+v", sm[0], dm[0])
	}
	if got := e.must("inspect", "-f", "{{json .Config.Volumes}} {{json .HostConfig.Binds}}", "run"); got != "{\"/data\":{}} null\n" {
		t.Errorf("the container's Volumes and Binds: %q", got)
	}

	e.must("rm", "run")
	if _, err := os.Lstat(vol); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rm left the volume %s: %v", vol, err)
	}
}

// TestUsernsAnonymousVolume: with --userns=auto the volume is an idmapped
// mount, as the layers are: the copied files show their in-container owners
// inside, and keep them on disk, as what the container's root writes there
// is 0:0 on disk; nothing of the volume is committed.
func TestUsernsAnonymousVolume(t *testing.T) {
	e := usernsEnv(t)
	e.must("run", "--name", "prep", "base:1", "sh", "-c", volumePrep)
	e.must("commit", "-c", "VOLUME /data", "prep", "img:1")
	want := e.must("run", "--rm", "img:1", "sh", "-c", volumeRun)
	out := e.must("run", "--name", "uns", "--userns=auto", "img:1", "sh", "-c", volumeRun)
	if out != want {
		t.Errorf("/data with --userns=auto:\n%s\nwant\n%s", out, want)
	}
	ms := parseMounts(t, e.must("inspect", "-f", "{{json .Mounts}}", "uns"))
	if len(ms) != 1 || ms[0].Type != "volume" {
		t.Fatalf(".Mounts %+v: want the volume", ms)
	}
	for name, ids := range map[string][2]uint32{"new": {0, 0}, "a": {1000, 2000}, "sub": {5, 6}, ".": {7, 8}} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(ms[0].Source, name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != ids[0] || st.Gid != ids[1] {
			t.Errorf("the volume's %s is %d:%d on disk, want %d:%d", name, st.Uid, st.Gid, ids[0], ids[1])
		}
	}
	if out := e.must("diff", "uns"); out != "A /other\n" {
		t.Errorf("diff: %q, want only A /other", out)
	}
}

// TestVolumeFlagAsDocker: docker run -v CTR (no host part) makes an
// anonymous volume filled from the image, whose writes no commit holds,
// and docker commit adds CTR, as given, to the image's VOLUMEs.
func TestVolumeFlagAsDocker(t *testing.T) {
	e := newEnv(t)
	requireDocker(t)
	name, img := "snap-e2e-volflag-"+strconv.Itoa(os.Getpid()), "snap-e2e-volflag-"+strconv.Itoa(os.Getpid())+":1"
	defer fixtures.Docker("rm", "-f", "-v", name)
	defer fixtures.Docker("rmi", "-f", img)
	const script = "cat /usr/share/doc/base/NOTES && echo x > /usr/share/doc/base/NOTES && echo o > /o"
	args := []string{"run", "--name", name, "--network", "none", "-v", "/usr/share/doc/base/", fixtures.BaseImage, "sh", "-c", script}
	dockerOut, err := fixtures.Docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixtures.Docker("commit", name, img); err != nil {
		t.Fatal(err)
	}
	var dockerLayer bytes.Buffer
	if err := fixtures.SaveLastLayer(img, &dockerLayer); err != nil {
		t.Fatal(err)
	}
	dockerVolumes, err := fixtures.Docker("inspect", "-f", "{{json .Config.Volumes}}", img)
	if err != nil {
		t.Fatal(err)
	}
	if out := e.must("run", "--name", "vf", "-v", "/usr/share/doc/base/", "base:1", "sh", "-c", script); out != dockerOut {
		t.Errorf("snap printed %q, docker %q", out, dockerOut)
	}
	e.must("commit", "vf", "out:1")
	snapNames, dockerNames := e.snapTopLayer(t, "out:1"), layerNames(t, &dockerLayer)
	if !slices.Equal(snapNames, dockerNames) || !slices.Equal(snapNames, []string{"o"}) {
		t.Errorf("the commit's layer: snap %q, docker %q, want [o]", snapNames, dockerNames)
	}
	if got := e.must("inspect", "-f", "{{json .Config.Volumes}}", "out:1"); got != dockerVolumes {
		t.Errorf("committed Volumes: snap %q, docker %q", got, dockerVolumes)
	}
}
