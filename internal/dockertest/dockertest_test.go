package dockertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"snap/internal/fixtures"
)

// TestStart: a private vfs daemon runs a container of the base image, keeps
// its layers under its own data root, and leaves nothing behind.
func TestStart(t *testing.T) {
	var d *Daemon
	t.Run("run", func(t *testing.T) {
		d = Start(t, Options{Driver: "vfs"})
		out := d.Must(t, "run", "--rm", "--network", "none", fixtures.BaseImage, "cat", "/etc/motd")
		if out != "snap test base\n" {
			t.Errorf("container said %q", out)
		}
		root := strings.TrimSpace(d.Must(t, "info", "--format", "{{.DockerRootDir}}"))
		if root != d.DataRoot {
			t.Errorf("data root %s, want %s", root, d.DataRoot)
		}
		if _, err := os.Stat(filepath.Join(d.DataRoot, "vfs/dir")); err != nil {
			t.Error(err)
		}
	})
	if d == nil {
		return
	}
	if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
		t.Errorf("after the test %s is still there (%v)", d.Dir, err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), d.Dir) {
		t.Errorf("mounts left beneath %s", d.Dir)
	}
}
