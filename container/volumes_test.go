package container

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"snap/commit"
	"snap/diff"
	"snap/internal/testenv"
	"snap/store"
)

// volumeImage is the busybox base with VOLUME /data, whose files have
// owners, modes, an xattr, a hardlink, a symlink out of the rootfs, a fifo
// and a device.
func volumeImage(t *testing.T, st *store.Store, tag string) {
	t.Helper()
	imageFrom(t, st, tag, []string{"VOLUME /data"}, func(root string) {
		d := filepath.Join(root, "data")
		for _, err := range []error{
			os.MkdirAll(filepath.Join(d, "sub"), 0o755),
			os.WriteFile(filepath.Join(d, "a"), []byte("hello\n"), 0o644),
			os.Chown(filepath.Join(d, "a"), 1000, 2000),
			os.Chmod(filepath.Join(d, "a"), 0o640),
			unix.Lsetxattr(filepath.Join(d, "a"), "user.snap", []byte("kept"), 0),
			os.Link(filepath.Join(d, "a"), filepath.Join(d, "hard")),
			os.Symlink("/etc/shadow", filepath.Join(d, "shadow")),
			unix.Mkfifo(filepath.Join(d, "fifo"), 0o644),
			unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))),
			os.WriteFile(filepath.Join(d, "sub", "f"), []byte("x\n"), 0o755),
			unix.Chmod(filepath.Join(d, "sub", "f"), 0o4755), // os.Chmod knows no raw setuid bit
			os.Chown(filepath.Join(d, "sub"), 5, 6),
			unix.Chmod(filepath.Join(d, "sub"), 0o2750),
			os.Chown(d, 7, 8),
			os.Chmod(d, 0o711),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

// volumeDirs are the anonymous volumes in the container's directory.
func volumeDirs(m *Manager, meta *Meta) []string {
	dirs, _ := filepath.Glob(m.path(meta.ID, "volumes", "*"))
	return dirs
}

// commitChanges lists what a commit of the container would hold.
func commitChanges(t *testing.T, st *store.Store, name string) []string {
	t.Helper()
	o, err := Committable{Name: name}.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := o.Changes.Walk(context.Background(), func(c diff.Change) error { listed = append(listed, c.String()); return nil }); err != nil {
		t.Fatal(err)
	}
	return listed
}

// statScript lists /data as the container sees it.
const statScript = `cd /data && stat -c '%n %u:%g %a %F %t,%T %h' . * sub/* && cat a sub/f`

const wantStat = `. 7:8 711 directory 0,0 3
a 1000:2000 640 regular file 0,0 2
fifo 0:0 644 fifo 0,0 1
hard 1000:2000 640 regular file 0,0 2
null 0:0 644 character special file 1,3 1
shadow 0:0 777 symbolic link 0,0 1
sub 5:6 2750 directory 0,0 2
sub/f 0:0 4755 regular file 0,0 1
hello
x
`

// TestAnonymousVolume: an image's VOLUME is an anonymous volume, as
// docker's: filled from the image when the container is made (owners,
// modes, setuid and setgid bits, xattrs, hardlinks, symlinks as they are,
// fifos and devices), written by the container, kept across runs, never in
// a commit (which keeps the VOLUME in its config), removed with the
// container.
func TestAnonymousVolume(t *testing.T) {
	st, m := setup(t)
	volumeImage(t, st, "vol:1")
	meta, err := m.Create(CreateOptions{Image: "vol:1", Name: "anon", Args: []string{"sh", "-c", statScript + " && echo n > /data/new && echo o > /other"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	var out bytes.Buffer
	code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false)
	if err != nil || code != 0 || out.String() != wantStat {
		t.Fatalf("in the container: exit %d %v\n%s\nwant\n%s", code, err, out.String(), wantStat)
	}
	vols := volumeDirs(m, meta)
	if len(vols) != 1 {
		t.Fatalf("volumes in the container's directory: %q, want one", vols)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(vols[0], "a"), "user.snap", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("the copy of /data/a has user.snap %q %v, want \"kept\"", buf[:n], err)
	}
	if b, err := os.ReadFile(filepath.Join(vols[0], "new")); err != nil || string(b) != "n\n" {
		t.Errorf("the volume's new file: %q %v", b, err)
	}
	if got := commitChanges(t, st, "anon"); !slices.Equal(got, []string{"A /other"}) {
		t.Errorf("commit changes %q, want only A /other", got)
	}
	img, err := commit.Commit(context.Background(), st, Committable{Name: "anon"}, commit.Options{Tag: "vol:2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.Config.Config.Volumes["/data"]; !ok || len(img.Config.Config.Volumes) != 1 {
		t.Errorf("committed Volumes %v, want /data", img.Config.Config.Volumes)
	}

	// Started again, the container has what it wrote, and the image's
	// files were not copied over it.
	meta.Args = []string{"sh", "-c", "cat /data/new; rm /data/a; ls /data | wc -l"}
	out.Reset()
	if code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false); err != nil || code != 0 || out.String() != "n\n6\n" {
		t.Errorf("second run: %q exit %d %v", out.String(), code, err)
	}
	out.Reset()
	meta.Args = []string{"sh", "-c", "ls /data | wc -l"}
	if code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false); err != nil || code != 0 || out.String() != "6\n" {
		t.Errorf("third run: %q exit %d %v, want /data/a still gone", out.String(), code, err)
	}
	if err := m.Remove(meta, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(vols[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rm left the volume %s: %v", vols[0], err)
	}
}

// TestVolumeFlags: -v CTR is an anonymous volume as an image's VOLUME is
// (filled from the image, not committed, a VOLUME of the commit, as docker
// commits it); -v HOST:CTR on an image's VOLUME replaces its volume.
func TestVolumeFlags(t *testing.T) {
	st, m := setup(t)
	volumeImage(t, st, "vol:1")

	meta, err := m.Create(CreateOptions{Image: "base:1", Name: "etc", Volumes: []string{"/etc/"}, Args: []string{"sh", "-c", "cat /etc/motd && echo more >> /etc/motd && echo o > /other"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	var out bytes.Buffer
	if code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false); err != nil || code != 0 || out.String() != "snap test base\n" {
		t.Fatalf("-v /etc/: %q exit %d %v", out.String(), code, err)
	}
	if n := len(volumeDirs(m, meta)); n != 1 {
		t.Errorf("-v /etc/: %d volumes, want 1", n)
	}
	if got := commitChanges(t, st, "etc"); !slices.Equal(got, []string{"A /other"}) {
		t.Errorf("-v /etc/: commit changes %q, want only A /other", got)
	}
	img, err := commit.Commit(context.Background(), st, Committable{Name: "etc"}, commit.Options{Tag: "etc:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.Config.Config.Volumes["/etc/"]; !ok {
		t.Errorf("committed Volumes %v, want /etc/ as docker keeps it", img.Config.Config.Volumes)
	}

	host := t.TempDir()
	meta, err = m.Create(CreateOptions{Image: "vol:1", Volumes: []string{host + ":/data/"}, Args: []string{"sh", "-c", "ls /data; echo w > /data/w"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	out.Reset()
	if code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false); err != nil || code != 0 || out.String() != "" {
		t.Errorf("-v HOST:/data/: %q exit %d %v, want the host's empty dir", out.String(), code, err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "w")); err != nil || string(b) != "w\n" {
		t.Errorf("-v HOST:/data/: the host dir got %q %v", b, err)
	}
	if n := len(volumeDirs(m, meta)); n != 0 {
		t.Errorf("-v HOST:/data/: %d anonymous volumes, want none", n)
	}
}

// TestAnonymousVolumeHostile: an image's VOLUME that is a symlink to a host
// directory, that climbs out with "..", or that holds symlinks to host
// files, is resolved and copied inside the rootfs: nothing on the host is
// read or written, and the container's writes go to the volume; a VOLUME
// on a file is refused, as docker refuses it.
func TestAnonymousVolumeHostile(t *testing.T) {
	st, m := setup(t)
	hostDir, hostDir2, climb := hostPath(t, "voldir"), hostPath(t, "voldir2"), hostPath(t, "volclimb")
	for _, d := range []string{hostDir, hostDir2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "secret"), []byte("host\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	up := strings.Repeat("/..", 30)
	imageFrom(t, st, "evil:1", []string{"VOLUME /data /etcl /links /hostlink/sub " + up + climb}, func(root string) {
		for _, err := range []error{
			os.Symlink(hostDir, filepath.Join(root, "data")),
			os.Symlink("/etc", filepath.Join(root, "etcl")),
			os.Symlink(up[1:]+hostDir2, filepath.Join(root, "hostlink")),
			os.Mkdir(filepath.Join(root, "links"), 0o755),
			os.Symlink("/etc/shadow", filepath.Join(root, "links", "abs")),
			os.Symlink(up[1:]+"/etc/shadow", filepath.Join(root, "links", "rel")),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	script := "cat /etcl/passwd; readlink /links/abs; readlink /links/rel; " +
		"for d in /data /etcl /links /hostlink/sub " + climb + "; do echo w > $d/w; done"
	meta, err := m.Create(CreateOptions{Image: "evil:1", Name: "evil", Args: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	var out bytes.Buffer
	code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false)
	want := "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n/etc/shadow\n" + up[1:] + "/etc/shadow\n"
	if err != nil || code != 0 || out.String() != want {
		t.Errorf("in the container: %q exit %d %v, want %q", out.String(), code, err, want)
	}
	for _, d := range []string{hostDir, hostDir2} {
		if ents, _ := os.ReadDir(d); len(ents) != 1 {
			t.Errorf("the host dir %s now holds %d entries", d, len(ents))
		}
	}
	if _, err := os.Lstat(climb); err == nil {
		t.Errorf("%s was made on the host", climb)
	}
	vols := volumeDirs(m, meta)
	if len(vols) != 5 {
		t.Fatalf("%d volumes, want 5", len(vols))
	}
	for _, v := range vols {
		if _, err := os.Lstat(filepath.Join(v, "secret")); err == nil {
			t.Errorf("the host's secret was copied into %s", v)
		}
		if fi, err := os.Lstat(filepath.Join(v, "abs")); err == nil && fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s/abs is a %v, want the image's symlink", v, fi.Mode())
		}
	}
	if got := commitChanges(t, st, "evil"); len(got) != 0 {
		t.Errorf("commit changes %q, want none: every write went to a volume", got)
	}

	imageFrom(t, st, "onfile:1", []string{"VOLUME /etc/motd"}, func(string) {})
	if _, err := m.Create(CreateOptions{Image: "onfile:1", Args: []string{"true"}}); !errors.Is(err, ErrVolume) {
		t.Errorf("a VOLUME on a file: %v, want ErrVolume", err)
	}
	if all, _ := m.List(); len(all) != 1 {
		t.Errorf("%d containers, want the refused one not made", len(all))
	}
}

// TestFillVolumeLayers: the copy-up reads the image as the overlay shows
// it: a whiteout hides a lower file, an opaque directory its lower
// entries, a plain directory merges with its lower copies; a socket is left
// out, as docker's tar leaves it.
func TestFillVolumeLayers(t *testing.T) {
	testenv.Root(t, "whiteouts (mknod) and trusted xattrs")
	top, mid, bottom := t.TempDir(), t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"data/opq", "data/sub"} {
		must(os.MkdirAll(filepath.Join(bottom, d), 0o755))
	}
	for _, f := range []string{"data/keep", "data/gone", "data/opq/old", "data/sub/low"} {
		must(os.WriteFile(filepath.Join(bottom, f), []byte(f), 0o644))
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(err)
	must(unix.Bind(sock, &unix.SockaddrUnix{Name: filepath.Join(bottom, "data/sock")}))
	unix.Close(sock)
	must(os.MkdirAll(filepath.Join(mid, "data/sub"), 0o755))
	must(os.WriteFile(filepath.Join(mid, "data/sub/mid"), nil, 0o644))
	must(unix.Mknod(filepath.Join(mid, "data/gone"), unix.S_IFCHR, 0))
	must(os.MkdirAll(filepath.Join(top, "data/opq"), 0o755))
	must(unix.Setxattr(filepath.Join(top, "data/opq"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(top, "data/opq/new"), nil, 0o644))
	must(os.WriteFile(filepath.Join(top, "data/keep2"), nil, 0o644))
	v, err := openImageFS([]string{top, mid, bottom})
	must(err)
	defer v.close()
	vol := filepath.Join(t.TempDir(), "vol")
	must(fillVolume(v, "/data", vol))
	var got []string
	must(filepath.WalkDir(vol, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != vol {
			got = append(got, strings.TrimPrefix(p, vol+"/"))
		}
		return err
	}))
	want := []string{"keep", "keep2", "opq", "opq/new", "sub", "sub/low", "sub/mid"}
	if !slices.Equal(got, want) {
		t.Errorf("the volume holds %q, want %q", got, want)
	}
	if n, err := unix.Getxattr(filepath.Join(vol, "opq"), "trusted.overlay.opaque", nil); err == nil {
		t.Errorf("the volume's opq has overlay's opaque xattr (%d bytes)", n)
	}
}
