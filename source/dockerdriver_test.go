package source

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"snap/diff"
)

const testCID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeDataRoot lays out what docker's layer store records of one vfs
// container: layerdb/mounts/<id>/{mount-id,init-id} and the two dirs.
func fakeDataRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mounts := filepath.Join(root, "image/vfs/layerdb/mounts", testCID)
	for _, d := range []string{mounts, filepath.Join(root, "vfs/dir/m1"), filepath.Join(root, "vfs/dir/m1-init")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range map[string]string{"mount-id": "m1", "init-id": "m1-init"} {
		if err := os.WriteFile(filepath.Join(mounts, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func vfsContainer() *ContainerJSON {
	c := &ContainerJSON{ID: testCID}
	c.GraphDriver.Name = "vfs"
	return c
}

// TestDockerWalkerLayerStore: the layers of a vfs container are found from
// the layer store; an id file that is no plain id in a regular file (a path
// out of the data root, a symlink, a FIFO, a huge file) is refused, never
// followed, and the FIFO never blocks the read.
func TestDockerWalkerLayerStore(t *testing.T) {
	root := fakeDataRoot(t)
	w, err := dockerWalker(&Info{DockerRootDir: root, Driver: "vfs"}, vfsContainer())
	if err != nil {
		t.Fatal(err)
	}
	nd, ok := w.(naiveDiff)
	if !ok || nd.r.Root != filepath.Join(root, "vfs/dir/m1") || len(nd.r.Lowers) != 1 || nd.r.Lowers[0] != filepath.Join(root, "vfs/dir/m1-init") {
		t.Fatalf("walker %#v", w)
	}
	if m, ok := nd.Merged().(diff.Rootfs); !ok || !reflect.DeepEqual(m, nd.r.Merged()) {
		t.Errorf("merged view %#v does not list as docker diff", nd.Merged())
	}
	if _, ok := w.(interface{ Whole() diff.Walker }); ok {
		t.Error("a vfs walker squashes its container's directory, init stubs and all")
	}

	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "id"), []byte("m1"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		plant func(p string) error
	}{
		{"dot-dot", func(p string) error { return os.WriteFile(p, []byte("../../etc"), 0o644) }},
		{"absolute", func(p string) error { return os.WriteFile(p, []byte("/etc"), 0o644) }},
		{"slash", func(p string) error { return os.WriteFile(p, []byte("m1/../../x"), 0o644) }},
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o644) }},
		{"huge", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("a", 10000)), 0o644) }},
		{"symlink-out", func(p string) error { return os.Symlink(filepath.Join(outside, "id"), p) }},
		{"symlink-in", func(p string) error { return os.Symlink("init-id", p) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"dir", func(p string) error { return os.Mkdir(p, 0o755) }},
	}
	for _, tc := range tests {
		for _, file := range []string{"mount-id", "init-id"} {
			t.Run(tc.name+"/"+file, func(t *testing.T) {
				root := fakeDataRoot(t)
				p := filepath.Join(root, "image/vfs/layerdb/mounts", testCID, file)
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := tc.plant(p); err != nil {
					t.Fatal(err)
				}
				w, err := dockerWalker(&Info{DockerRootDir: root, Driver: "vfs"}, vfsContainer())
				if err == nil {
					t.Fatalf("accepted: %#v", w)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error on several lines: %q", err)
				}
			})
		}
	}

	t.Run("layer dir is a symlink", func(t *testing.T) {
		root := fakeDataRoot(t)
		d := filepath.Join(root, "vfs/dir/m1")
		if err := os.Remove(d); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, d); err != nil {
			t.Fatal(err)
		}
		if _, err := dockerWalker(&Info{DockerRootDir: root}, vfsContainer()); !errors.Is(err, ErrLayerStore) {
			t.Errorf("a symlinked layer dir: %v", err)
		}
	})
	t.Run("bad container id", func(t *testing.T) {
		c := vfsContainer()
		c.ID = "../../" + testCID[6:]
		if _, err := dockerWalker(&Info{DockerRootDir: fakeDataRoot(t)}, c); !errors.Is(err, ErrLayerStore) {
			t.Errorf("container id with a path: %v", err)
		}
	})
}

// TestDockerWalkerRefusals: a driver snap does not read is named, and a
// data root or layer that is not on this host is said to be a remote
// engine's, each on one line.
func TestDockerWalkerRefusals(t *testing.T) {
	tests := []struct {
		name   string
		info   *Info
		driver string
		data   map[string]string
		want   error
		says   string
	}{
		{"zfs", &Info{DockerRootDir: t.TempDir()}, "zfs", nil, ErrUnsupportedDriver, `"zfs" storage driver`},
		{"devicemapper", &Info{DockerRootDir: t.TempDir()}, "devicemapper", nil, ErrUnsupportedDriver, `"devicemapper"`},
		{"no data root here", &Info{DockerRootDir: "/nonexistent/docker"}, "vfs", nil, ErrRemoteEngine, "/nonexistent/docker"},
		{"container not in the data root", &Info{DockerRootDir: t.TempDir()}, "btrfs", nil, ErrRemoteEngine, testCID[:12]},
		{"relative data root", &Info{DockerRootDir: "docker"}, "vfs", nil, ErrRemoteEngine, "docker"},
		{"overlay2 upper not here", &Info{}, "overlay2", map[string]string{"UpperDir": "/nonexistent/upper", "LowerDir": "/nonexistent/l"}, ErrRemoteEngine, "/nonexistent/upper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &ContainerJSON{ID: testCID}
			c.GraphDriver.Name, c.GraphDriver.Data = tc.driver, tc.data
			_, err := dockerWalker(tc.info, c)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want %v naming %q", err, tc.want, tc.says)
			}
		})
	}
	if _, err := NewEngine("tcp://10.0.0.1:2375"); !errors.Is(err, ErrRemoteEngine) || !strings.Contains(err.Error(), "tcp://10.0.0.1:2375") {
		t.Errorf("a tcp:// engine: %v", err)
	}
}
