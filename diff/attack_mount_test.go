package diff

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMountsInsideTheRootStayOutOfTheLayer: a dir:// rootfs in use as a
// chroot has the host's things mounted inside it (arch-chroot and the like
// mount /proc, /sys, /dev, /run and bind /etc/resolv.conf while it runs).
// docker never puts a mount's content in a layer (its upper holds the
// mount points only); snap walks straight into them, so a commit of such a
// tree carries host files (here a tmpfs's and a bind-mounted host file's
// bytes). openat2's RESOLVE_BENEATH confines symlinks and "..", not mounts;
// st_dev cannot tell a bind mount from the same filesystem either. Walking
// a non-recursive clone of the root's mount (open_tree(OPEN_TREE_CLONE)
// without AT_RECURSIVE) shows the tree as it is on disk, mount points and
// what lies under them, whatever is mounted meanwhile.
func TestMountsInsideTheRootStayOutOfTheLayer(t *testing.T) {
	requireRoot(t)
	const hostSecret = "HOST-SECRET-not-in-the-rootfs"
	tests := []struct {
		name  string
		mount func(t *testing.T, root, host string) error
	}{
		{"tmpfs on a directory", func(t *testing.T, root, host string) error {
			if err := unix.Mount("tmpfs", filepath.Join(root, "run"), "tmpfs", 0, "size=1m"); err != nil {
				return err
			}
			t.Cleanup(func() { unix.Unmount(filepath.Join(root, "run"), unix.MNT_DETACH) })
			return os.WriteFile(filepath.Join(root, "run/secret"), []byte(hostSecret), 0o600)
		}},
		{"host directory bound on a directory", func(t *testing.T, root, host string) error {
			if err := unix.Mount(host, filepath.Join(root, "run"), "", unix.MS_BIND, ""); err != nil {
				return err
			}
			t.Cleanup(func() { unix.Unmount(filepath.Join(root, "run"), unix.MNT_DETACH) })
			return nil
		}},
		{"host file bound on a file (same filesystem)", func(t *testing.T, root, host string) error {
			if err := unix.Mount(filepath.Join(host, "resolv.conf"), filepath.Join(root, "etc/resolv.conf"), "", unix.MS_BIND, ""); err != nil {
				return err
			}
			t.Cleanup(func() { unix.Unmount(filepath.Join(root, "etc/resolv.conf"), unix.MNT_DETACH) })
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, host := t.TempDir(), t.TempDir()
			if err := os.Mkdir(filepath.Join(root, "run"), 0o755); err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(root, "etc/resolv.conf"), strings.Repeat("#", len(hostSecret)))
			write(t, filepath.Join(host, "resolv.conf"), hostSecret)
			write(t, filepath.Join(host, "secret"), hostSecret)
			if err := tc.mount(t, root, host); err != nil {
				t.Fatalf("mount: %v", err)
			}
			for _, src := range []Walker{Rootfs{Root: root}, Overlay{Upper: root}} {
				es, _ := layer(t, src, Options{})
				for _, e := range es {
					if strings.Contains(e.body, hostSecret) {
						t.Errorf("%T: the layer's /%s holds a mounted host file's bytes", src, e.hdr.Name)
					}
				}
			}
		})
	}
}
