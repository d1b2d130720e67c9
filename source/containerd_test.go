package source

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/containerd/mount"

	"snap/diff"
)

// TestSnapshotChanges: a snapshot's overlay mount gives its upper and
// lowers, a bind mount its whole tree; a mount that names a directory
// outside the snapshotter's snapshots (directly, through "..", through a
// symlink, or smuggled into an option by a comma or a colon) is refused,
// as is one option given twice, for snap would commit whatever it names.
func TestSnapshotChanges(t *testing.T) {
	w := t.TempDir()
	root := filepath.Join(w, "io.containerd.snapshotter.v1.overlayfs")
	outside := filepath.Join(w, "outside")
	for _, d := range []string{"snapshots/1/fs", "snapshots/2/fs", "snapshots/2/work", "snapshots/4"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(outside, "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "snapshots/3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "fs"), filepath.Join(root, "snapshots/3/fs")); err != nil {
		t.Fatal(err)
	}
	s := func(p string) string { return filepath.Join(root, "snapshots", p) }
	ov := func(opts ...string) []mount.Mount {
		return []mount.Mount{{Type: "overlay", Source: "overlay", Options: opts}}
	}
	good := ov("index=off", "workdir="+s("2/work"), "upperdir="+s("2/fs"), "lowerdir="+s("1/fs"))
	tests := []struct {
		name    string
		mounts  []mount.Mount
		want    diff.Walker
		wantErr error // nil: any error when want is nil
	}{
		{"overlay", good, diff.Overlay{Upper: s("2/fs"), Lowers: []string{s("1/fs")}}, nil},
		{"two lowers", ov("upperdir="+s("2/fs"), "lowerdir="+s("1/fs")+":"+s("4")), diff.Overlay{Upper: s("2/fs"), Lowers: []string{s("1/fs"), s("4")}}, nil},
		{"bind", []mount.Mount{{Type: "bind", Source: s("4"), Options: []string{"rbind", "rw"}}}, diff.Rootfs{Root: s("4")}, nil},
		{"upper outside", ov("upperdir="+outside, "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"upper through ..", ov("upperdir="+s("2/../../../outside/fs"), "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"upper through a symlink", ov("upperdir="+s("3/fs"), "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"upper is the root", ov("upperdir="+root, "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"relative upper", ov("upperdir=snapshots/2/fs", "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"comma trick", ov("upperdir="+s("2/fs")+",upperdir="+outside, "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"comma in lowerdir", ov("upperdir="+s("2/fs"), "lowerdir="+s("1/fs")+",lowerdir="+outside), nil, ErrBadSnapshot},
		{"colon in upperdir", ov("upperdir="+s("2/fs")+":"+outside, "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"colon trick in lowerdir", ov("upperdir="+s("2/fs"), "lowerdir="+s("1/fs")+":"+outside), nil, ErrBadSnapshot},
		{"upperdir twice", ov("upperdir="+s("2/fs"), "upperdir="+outside, "lowerdir="+s("1/fs")), nil, ErrBadSnapshot},
		{"lowerdir twice", ov("upperdir="+s("2/fs"), "lowerdir="+s("1/fs"), "lowerdir="+outside), nil, ErrBadSnapshot},
		{"bind outside", []mount.Mount{{Type: "bind", Source: outside, Options: []string{"rbind", "rw"}}}, nil, ErrBadSnapshot},
		{"bind option comma", []mount.Mount{{Type: "bind", Source: s("4"), Options: []string{"rbind,rw"}}}, nil, ErrBadSnapshot},
		{"two mounts", append(good, good...), nil, ErrBadSnapshot},
		{"read-only overlay", ov("lowerdir=" + s("1/fs") + ":" + s("4")), nil, nil},
		{"read-only bind", []mount.Mount{{Type: "bind", Source: s("4"), Options: []string{"rbind", "ro"}}}, nil, nil},
		{"a block device", []mount.Mount{{Type: "ext4", Source: "/dev/loop0"}}, nil, nil},
	}
	for _, tc := range tests {
		got, err := snapshotChanges(tc.mounts, root)
		if tc.want != nil {
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s: %#v, %v; want %#v", tc.name, got, err, tc.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted as %#v", tc.name, got)
		} else if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}
