package container

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"snap/commit"
	"snap/compression"
	"snap/diff"
	"snap/internal/fixtures"
	"snap/internal/testenv"
	"snap/sourcing"
	"snap/store"
)

// entry is one tar entry of a test layer.
type entry struct {
	name   string
	typ    byte // tar.TypeReg unless set
	body   string
	mode   int64
	link   string
	xattrs map[string]string
	major  int64
	uid    int
	mtime  int64 // seconds; 0: 1000000
}

func layerTar(t *testing.T, ents []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Gid: e.uid,
			ModTime: time.Unix(1000000, 0), Devmajor: e.major, Devminor: 3, Format: tar.FormatPAX}
		if e.mtime != 0 {
			h.ModTime = time.Unix(e.mtime, 0)
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if len(e.xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// deepImage stores, cheaply (through the store's API, uncompressed), the
// image base with layers on top of it, bottom-most first, tagged tag.
func deepImage(t *testing.T, st *store.Store, base string, layers [][]entry, tag string) *store.Image {
	t.Helper()
	img, err := st.Lookup(base)
	if err != nil {
		t.Fatal(err)
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(img.RawConfig, &cfg); err != nil {
		t.Fatal(err)
	}
	descs := slices.Clone(img.Manifest.Layers)
	for i, ents := range layers {
		d, diffID, err := st.AddLayer(context.Background(), bytes.NewReader(layerTar(t, ents)), compression.None)
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		cfg.History = append(cfg.History, ocispec.History{CreatedBy: fmt.Sprintf("layer %d", i)})
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := st.Put(b, descs, []string{tag})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deepLayers are n layers on the busybox base: the bottom ones add files,
// whiteouts and an opaque directory, the ones in the middle a file each,
// one high up whites out and makes opaque what the bottom ones made, and
// the top one adds /top. With 600 the bottom 256 go into a flattened lower
// and the whiteouts of both kinds cross it.
func deepLayers(n int) [][]entry {
	ls := make([][]entry, n)
	ls[0] = []entry{{name: "bottom", body: "bottom\n"}, {name: "gone", typ: tar.TypeDir}, {name: "gone/a", body: "a"}, {name: "gone/b", body: "b"},
		{name: "opq", typ: tar.TypeDir}, {name: "opq/low", body: "low"}, {name: "cross", typ: tar.TypeDir}, {name: "cross/x", body: "x"},
		{name: "cross/y", body: "y"}, {name: "hiopq", typ: tar.TypeDir}, {name: "hiopq/low", body: "low"}, {name: "depth", typ: tar.TypeDir}}
	ls[1] = []entry{{name: "gone", typ: tar.TypeDir}, {name: "gone/.wh.a"}}
	ls[2] = []entry{{name: "opq", typ: tar.TypeDir}, {name: "opq/.wh..wh..opq"}, {name: "opq/new", body: "new"}}
	for i := 3; i < n-1; i++ {
		ls[i] = []entry{{name: "depth", typ: tar.TypeDir}, {name: fmt.Sprintf("depth/%d", i), body: fmt.Sprint(i)}}
	}
	hi := n - 10
	ls[hi] = append(ls[hi], entry{name: "cross", typ: tar.TypeDir}, entry{name: "cross/.wh.x"},
		entry{name: "hiopq", typ: tar.TypeDir}, entry{name: "hiopq/.wh..wh..opq"}, entry{name: "hiopq/high", body: "high"})
	ls[n-1] = []entry{{name: "top", body: "top\n"}}
	return ls
}

// deepScript prints what a container of deepImage(deepLayers(n)) sees.
const deepScript = "cat /bottom /top; for d in gone opq cross hiopq; do echo $d: $(ls /$d); done; ls /depth | wc -l; cat /depth/3 /depth/$(( $N - 2 )); echo"

func deepWant(n int) string {
	return fmt.Sprintf("bottom\ntop\ngone: b\nopq: new\ncross: y\nhiopq: high\n%d\n3%d\n", n-4, n-2)
}

// TestRunDeepImage runs images of many layers: 42 (one page of lowerdir=
// overflowed at 42 before the new mount API), 499 (with the init layer,
// overlayfs' 500 exactly) and 600 (beyond it: the bottom 256 layers run
// flattened). The container sees the top and bottom layers' files, and
// whiteouts and opaque directories on both sides of the flattened lower;
// a commit from it holds only its change.
func TestRunDeepImage(t *testing.T) {
	st, m := setup(t)
	bin := filepath.Join(t.TempDir(), "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{42, 499, 600} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			start := time.Now()
			tag := fmt.Sprintf("deep:%d", n)
			img := deepImage(t, st, "base:1", deepLayers(n), tag)
			if got := len(img.Config.RootFS.DiffIDs); got != n+1 {
				t.Fatalf("%d layers, want %d", got, n+1)
			}
			meta, err := m.Create(CreateOptions{Image: tag, Name: fmt.Sprintf("deep%d", n), Env: []string{fmt.Sprintf("N=%d", n)},
				Args: []string{"sh", "-c", deepScript + "; echo changed > /changed; rm /bottom; echo more >> /depth/3"}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Remove(meta, true)
			var out bytes.Buffer
			code, err := m.Start(context.Background(), meta, Stdio{Out: &out, Err: &out}, false)
			if err != nil {
				t.Fatal(err)
			}
			if want := deepWant(n); code != 0 || out.String() != want {
				t.Errorf("exit %d, output:\n%s\nwant:\n%s", code, out.String(), want)
			}
			// And as a user runs it, with the snap binary.
			ran, err := exec.Command(bin, "--root", st.Root(), "run", "--rm", "-e", fmt.Sprintf("N=%d", n), tag, "sh", "-c", deepScript).CombinedOutput()
			if want := deepWant(n); err != nil || string(ran) != want {
				t.Errorf("snap run: %v, output:\n%s\nwant:\n%s", err, ran, want)
			}
			committed, err := commit.Commit(context.Background(), st, Committable{Name: meta.Name}, commit.Options{Tag: tag + "-c"})
			if err != nil {
				t.Fatal(err)
			}
			// A file added, one removed from the bottom layer and one
			// changed in a middle one (both in the flattened lower at 600).
			if got, want := layerNames(t, st, committed), []string{".wh.bottom", "changed", "depth/", "depth/3"}; !slices.Equal(got, want) {
				t.Errorf("the commit's layer holds %q, want only the changes %q", got, want)
			}
			o, err := Committable{Name: meta.Name}.Open(context.Background(), st)
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			if err := o.Changes.(sourcing.Merger).Merged().Walk(context.Background(), func(c diff.Change) error { listed = append(listed, c.String()); return nil }); err != nil {
				t.Fatal(err)
			}
			if want := []string{"D /bottom", "A /changed", "C /depth", "C /depth/3"}; !slices.Equal(listed, want) {
				t.Errorf("diff lists %q, want %q", listed, want)
			}
			t.Logf("%d layers: build, run and commit in %v", n, time.Since(start))
		})
	}
}

// layerNames lists the entries of img's top layer.
func layerNames(t *testing.T, st *store.Store, img *store.Image) []string {
	t.Helper()
	top := img.Manifest.Layers[len(img.Manifest.Layers)-1]
	rc, err := st.OpenBlob(top.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r := io.Reader(rc)
	if strings.Contains(top.MediaType, "gzip") {
		gz, err := gzip.NewReader(rc)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// TestFlattenedView checks that a flattened lower gives the very merged
// view of the layers it stands for, whatever they hold: hardlinks,
// symlinks, devices, fifos, xattrs (security.capability too), setuid
// modes, owners, times; whiteouts of files and of directories, opaque
// directories, a file replaced by a directory and back. A small stack limit
// (8, step 3) makes mountLowers flatten 15 layers in five levels (each
// flattened lower made from the one below it).
func TestFlattenedView(t *testing.T) {
	st, m := setup(t)
	ls := [][]entry{
		{{name: "d", typ: tar.TypeDir, mode: 0o750, uid: 7, mtime: 2000000}, {name: "d/f", body: "f1", mode: 0o4755, uid: 1000},
			{name: "d/hl", typ: tar.TypeLink, link: "d/f", mode: 0o4755, uid: 1000}, {name: "d/sym", typ: tar.TypeSymlink, link: "../nowhere"},
			{name: "fifo", typ: tar.TypeFifo, mode: 0o600}, {name: "null", typ: tar.TypeChar, major: 1, mode: 0o666},
			{name: "cap", body: "c", mode: 0o755, xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "user.note": "yes"}},
			{name: "tree", typ: tar.TypeDir}, {name: "tree/a", typ: tar.TypeDir}, {name: "tree/a/b", body: "deep"}},
		{{name: "d", typ: tar.TypeDir, mode: 0o751, mtime: 3000000}, {name: "d/.wh.sym"}, {name: "d/g", body: "g"}},
		{{name: ".wh.tree"}, {name: "flip", body: "file"}},
		{{name: "tree", typ: tar.TypeDir}, {name: "tree/new", body: "new"}},
		{{name: ".wh.flip"}, {name: "flip", typ: tar.TypeDir}, {name: "flip/in", body: "in"}},
		{{name: "opq", typ: tar.TypeDir}, {name: "opq/x", body: "x"}},
		{{name: "opq", typ: tar.TypeDir}, {name: "opq/.wh..wh..opq"}, {name: "opq/y", body: "y"}},
	}
	for i := len(ls); i < 20; i++ {
		ls = append(ls, []entry{{name: fmt.Sprintf("l%d", i), body: fmt.Sprint(i)}, {name: "d", typ: tar.TypeDir, mode: 0o750, mtime: int64(4000000 + i)}})
	}
	ls[15] = append(ls[15], entry{name: "opq", typ: tar.TypeDir}, entry{name: "opq/z", body: "z"}, entry{name: ".wh.fifo"})
	img := deepImage(t, st, "base:1", ls, "flat:1")
	layers, err := st.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	full, err := m.mountLowers(nil, img, layers, 500, 256)
	if err != nil || !slices.Equal(full, layers) {
		t.Fatalf("within the limit the lowers are the layers: %v", err)
	}
	flat, err := m.mountLowers(nil, img, layers, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	// 21 layers, 7 stay: the bottom 15 (five steps) are flattened.
	if len(flat) != 7 || !slices.Equal(flat[:6], layers[:6]) || !strings.HasPrefix(flat[6], filepath.Join(st.Root(), "flat")+"/") {
		t.Fatalf("flattened lowers: %d %v", len(flat), flat)
	}
	want := viewOf(t, layers)
	got := viewOf(t, flat)
	if !slices.Equal(got, want) {
		t.Errorf("the flattened view differs:\n%s", diffLines(want, got))
	}
	if !slices.ContainsFunc(want, func(l string) bool { return strings.HasPrefix(l, "/d/hl reg 104755 1000:1000 n2 f1 ") }) {
		t.Errorf("the view lost the hardlink: %v", want)
	}
	// Made once: a second container of the image reuses it.
	again, err := m.mountLowers(nil, img, layers, 8, 3)
	if err != nil || !slices.Equal(again, flat) {
		t.Errorf("again: %v %v", again, err)
	}
}

func diffLines(want, got []string) string {
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// onThread runs fn on a locked thread of its own, with its own working
// directory and, if ns, its own mount namespace; the thread goes with it.
func onThread(t *testing.T, ns bool, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if !ns {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				errc <- err
				return
			}
			errc <- fn()
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// viewOf lists what a read-only overlay of lowers shows, one line a path:
// type, mode, owner, link count, content or target, device, times, xattrs.
func viewOf(t *testing.T, lowers []string) []string {
	t.Helper()
	mnt := t.TempDir()
	var lines []string
	err := onThread(t, true, func() error {
		if err := mountOverlayHere(mnt, lowers, "", ""); err != nil {
			return err
		}
		defer unix.Unmount(mnt, unix.MNT_DETACH)
		return filepath.WalkDir(mnt, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			rel := strings.TrimPrefix(p, mnt)
			var what string
			kind := map[uint32]string{unix.S_IFDIR: "dir", unix.S_IFREG: "reg", unix.S_IFLNK: "lnk", unix.S_IFIFO: "fifo", unix.S_IFCHR: "chr"}[st.Mode&unix.S_IFMT]
			switch kind {
			case "reg":
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				what = string(b)
				if len(b) > 64 {
					what = fmt.Sprintf("sha256:%x", sha256.Sum256(b))
				}
			case "lnk":
				what, _ = os.Readlink(p)
			case "chr":
				what = fmt.Sprintf("rdev %d", st.Rdev)
			}
			names, err := listXattrs(p)
			if err != nil {
				return err
			}
			sort.Strings(names)
			var xs []string
			for _, n := range names {
				v, _ := getXattr(p, n)
				xs = append(xs, fmt.Sprintf("%s=%q", n, v))
			}
			line := fmt.Sprintf("%s %s %o %d:%d n%d %s", rel, kind, st.Mode, st.Uid, st.Gid, st.Nlink, what)
			if kind == "dir" {
				line = fmt.Sprintf("%s %s %o %d:%d", rel, kind, st.Mode, st.Uid, st.Gid)
			}
			lines = append(lines, fmt.Sprintf("%s mtime %d.%09d %v", line, st.Mtim.Sec, st.Mtim.Nsec, xs))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// TestMountOverlayLegacy forces the fallback of kernels without lowerdir+
// (mount(2), whose options fit a page): called directly with 499 lowers
// named by long paths, and reached from mountOverlay by lowers longer than
// fsconfig takes (256 bytes), which it refuses with the EINVAL an old
// overlayfs gives lowerdir+. The lowers mount in their order, under an
// upper that takes writes; the process's working directory stays, and the
// short names go.
func TestMountOverlayLegacy(t *testing.T) {
	testenv.Root(t, "mounts")
	tests := []struct {
		name  string
		n     int
		lower func(w string, i int) string
		mount func(target string, lowers []string, upper, work string) error
	}{
		{"direct", 499, func(w string, i int) string {
			return filepath.Join(w, strings.Repeat("long-name-", 20), fmt.Sprintf("layer-%03d-%s", i, strings.Repeat("x", 40)))
		}, func(target string, lowers []string, upper, work string) error {
			return onThread(t, false, func() error { return mountOverlayLegacy(target, lowers, upper, work) })
		}},
		{"fallback", 60, func(w string, i int) string {
			return filepath.Join(w, fmt.Sprint(i), strings.Repeat("a", 150), strings.Repeat("b", 150))
		}, mountOverlay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := t.TempDir()
			var lowers []string
			for i := range tc.n {
				d := tc.lower(w, i)
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(d, "who"), []byte(fmt.Sprint(i)), 0o644)
				os.WriteFile(filepath.Join(d, fmt.Sprintf("only%d", i)), nil, 0o644)
				lowers = append(lowers, d)
			}
			if len(strings.Join(lowers, ":")) < 4*maxOptions {
				t.Fatal("the lowers are too short to need the fallback")
			}
			mnt, upper, work := filepath.Join(w, "mnt"), filepath.Join(w, "upper"), filepath.Join(w, "work")
			for _, d := range []string{mnt, upper, work} {
				os.Mkdir(d, 0o755)
			}
			before, _ := os.ReadDir(w)
			cwd, _ := os.Getwd()
			if err := tc.mount(mnt, lowers, upper, work); err != nil {
				t.Fatal(err)
			}
			defer unix.Unmount(mnt, unix.MNT_DETACH)
			if now, _ := os.Getwd(); now != cwd {
				t.Errorf("the working directory moved to %s", now)
			}
			if after, _ := os.ReadDir(w); len(after) != len(before) {
				t.Errorf("the short names stayed: %v", after)
			}
			if tc.name == "fallback" && !legacyMounted(mnt) {
				t.Errorf("not mounted through mount(2) and short names")
			}
			who, err := os.ReadFile(filepath.Join(mnt, "who"))
			if err != nil || string(who) != "0" {
				t.Errorf("top-most lower: %q %v", who, err)
			}
			if ents, err := os.ReadDir(mnt); err != nil || len(ents) != tc.n+1 {
				t.Errorf("%d entries, want %d: %v", len(ents), tc.n+1, err)
			}
			last := fmt.Sprintf("only%d", tc.n-1)
			if err := os.WriteFile(filepath.Join(mnt, last), []byte("up"), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(upper, last)); string(b) != "up" {
				t.Errorf("a write did not reach the upper")
			}
		})
	}
}

// legacyMounted reports an overlay on mnt whose lowers are the fallback's
// short names. mountinfo is read a few times: a read racing other mounts
// and unmounts (other tests, other containers) may miss a line.
func legacyMounted(mnt string) bool {
	for range 5 {
		// thread-self: the main thread of this test binary may be left in
		// a container's mount namespace by libcontainer (a goroutine
		// that joined it ended locked there), and /proc/self is its view.
		mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
		for _, l := range strings.Split(string(mi), "\n") {
			if strings.Contains(l, " "+mnt+" ") && strings.Contains(l, "lowerdir=0:1:2:") {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestFlatPruned checks the flattened lower's life: a prune keeps it while
// an image starts with its layers or an overlay has it mounted, and takes
// it once neither holds.
func TestFlatPruned(t *testing.T) {
	st, m := setup(t)
	deepImage(t, st, "base:1", deepLayers(520), "deep:520")
	meta, err := m.Create(CreateOptions{Image: "deep:520", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(meta, true)
	if _, err := m.Mount(meta); err != nil {
		t.Fatal(err)
	}
	flats := func() int {
		ents, _ := os.ReadDir(filepath.Join(st.Root(), "flat"))
		return len(ents)
	}
	if flats() != 1 {
		t.Fatalf("%d flattened lowers, want 1", flats())
	}
	if _, err := st.Prune(context.Background()); err != nil || flats() != 1 {
		t.Fatalf("a prune took the flattened lower of a tagged image: %v", err)
	}
	if _, err := st.Remove("deep:520"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Prune(context.Background()); err != nil || flats() != 1 {
		t.Fatalf("a prune took the flattened lower of a mounted overlay: %v", err)
	}
	// The layers above it, mounted by their names alone, stay as well.
	for _, f := range []string{"top", "bottom", "depth/300"} {
		if _, err := os.Stat(filepath.Join(m.Rootfs(meta.ID), f)); err != nil {
			t.Errorf("after a prune the container lost /%s: %v", f, err)
		}
	}
	if err := m.unmount(meta); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Prune(context.Background()); err != nil || flats() != 0 {
		t.Errorf("a prune left %d flattened lowers no image needs: %v", flats(), err)
	}
}

// TestRunCommitGenerations is a line of 500 run→commit generations, each
// run on the image the one before committed, changing a file and adding
// one: then the image has 501 layers, beyond what overlayfs stacks with the
// init layer, and its container sees every generation's change. Each old
// image goes once the next is committed (rmi), as a line of golden images
// keeps only its newest.
func TestRunCommitGenerations(t *testing.T) {
	st, m := setup(t)
	const gens = 500
	ctx := context.Background()
	start := time.Now()
	image, old := "base:1", ""
	for g := 1; g <= gens; g++ {
		script := fmt.Sprintf("mkdir -p /gen && echo %d > /gen/%d && echo %d > /gen/last", g, g, g)
		meta, err := m.Create(CreateOptions{Image: image, Args: []string{"sh", "-c", script}})
		if err != nil {
			t.Fatalf("generation %d: %v", g, err)
		}
		var out bytes.Buffer
		code, err := m.Start(ctx, meta, Stdio{Out: &out, Err: &out}, false)
		if err != nil || code != 0 {
			t.Fatalf("generation %d: exit %d %v: %s", g, code, err, out.String())
		}
		img, err := commit.Commit(ctx, st, Committable{Name: meta.Name}, commit.Options{Tag: "line:latest", Compression: compression.None})
		if err != nil {
			t.Fatalf("generation %d: %v", g, err)
		}
		if err := m.Remove(meta, true); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			if _, err := m.RemoveImage(old, false); err != nil {
				t.Fatal(err)
			}
		}
		image, old = "line:latest", img.ID.String()
		if g%100 == 0 {
			t.Logf("generation %d: %d layers, %v", g, len(img.Config.RootFS.DiffIDs), time.Since(start))
		}
	}
	t.Logf("%d generations: %v", gens, time.Since(start))
	// The last image, run as a user runs it: the snap binary.
	bin := filepath.Join(t.TempDir(), "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d %d %d\n", gens, gens*(gens+1)/2, gens)
	cmd := exec.Command(bin, "--root", st.Root(), "run", "--rm", image, "sh", "-c",
		`n=0; s=0; for f in /gen/[0-9]*; do n=$((n+1)); s=$((s+$(cat $f))); done; echo $n $s $(cat /gen/last)`)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != want {
		t.Errorf("snap run of generation %d: %q %v, want %q (count, sum, last)", gens, out, err, want)
	}
	t.Logf("%d generations and the last run: %v", gens, time.Since(start))
}
