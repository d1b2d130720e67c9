package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	archive "github.com/moby/go-archive"

	"snap/container"
	"snap/internal/fixtures"
	"snap/internal/testenv"
	"snap/store"
)

// A squash (commit --squash) is the image a commit makes, flattened: its
// one layer must unpack to exactly the tree the base's layers and the
// commit's own layer unpack to. The tests below commit each scenario's
// container twice, with and without --squash, and compare the two trees
// entry by entry: type, mode, owner, size, content, link target, device,
// mtime, every xattr (not only what docker keeps) and link counts.

// flatten unpacks img's layers, in order, into a fresh directory with
// go-archive (docker's own unpacker) and lists the tree.
func flatten(t *testing.T, st *store.Store, ref string) ([]Entry, *store.Image) {
	t.Helper()
	img, err := st.Lookup(ref)
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	for _, l := range img.Manifest.Layers {
		r, err := st.OpenBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		_, err = archive.ApplyLayer(dst, r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: apply %s: %v", ref, l.Digest, err)
		}
	}
	tree, err := ReadTree(dst)
	if err != nil {
		t.Fatal(err)
	}
	return tree, img
}

// sameTrees reports every difference between two trees, xattrs and all.
func sameTrees(t *testing.T, layers, squash []Entry) {
	t.Helper()
	byName := func(es []Entry) map[string]Entry {
		m := make(map[string]Entry, len(es))
		for _, e := range es {
			m[e.Name] = e
		}
		return m
	}
	l, s := byName(layers), byName(squash)
	n := 0
	for _, e := range layers {
		if got, ok := s[e.Name]; !ok {
			t.Errorf("squash lacks %v", e)
			n++
		} else if got.String() != e.String() {
			t.Errorf("entry differs\n  layers %v\n  squash %v", e, got)
			n++
		}
		if n == 10 {
			t.Fatal("more differences follow")
		}
	}
	for _, e := range squash {
		if _, ok := l[e.Name]; !ok {
			t.Errorf("squash adds %v", e)
		}
	}
}

// squashEqualsLayers commits src with and without --squash and compares
// the unpacked images; extra arguments go to both commits (--base).
func squashEqualsLayers(t *testing.T, root, src, name string, extra ...string) {
	t.Helper()
	layersRef, squashRef := "sq/"+name+":layers", "sq/"+name+":squash"
	mustSnap(t, root, append(append([]string{"commit", "-m", "layers"}, extra...), src, layersRef)...)
	mustSnap(t, root, append(append([]string{"commit", "--squash", "-m", "squash"}, extra...), src, squashRef)...)
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	lt, _ := flatten(t, st, layersRef)
	sq, img := flatten(t, st, squashRef)
	if len(img.Manifest.Layers) != 1 {
		t.Errorf("squash of %s has %d layers", src, len(img.Manifest.Layers))
	}
	if len(lt) == 0 {
		t.Fatal("the commit unpacks to nothing")
	}
	sameTrees(t, lt, sq)
}

// checkSquashHistory: a squashed image keeps its base's history, each entry
// marked empty (its layer is in the new one), and ends with the commit's
// own entry holding the one layer, as with dir://.
func checkSquashHistory(t *testing.T, root, name string) {
	t.Helper()
	const format = "{{.CreatedBy}}|{{.Comment}}"
	lh := mustSnap(t, root, "history", "--no-trunc", "--format", format, "sq/"+name+":layers")
	sh := mustSnap(t, root, "history", "--no-trunc", "--format", format, "sq/"+name+":squash")
	if strings.Replace(lh, "|layers\n", "|squash\n", 1) != sh {
		t.Errorf("history\nlayers:\n%s\nsquash:\n%s", lh, sh)
	}
	sizes := strings.Fields(mustSnap(t, root, "history", "--format", "{{.Size}}", "sq/"+name+":squash"))
	if len(sizes) < 2 || sizes[0] == "0B" {
		t.Fatalf("squash history sizes %q: the top entry holds the layer", sizes)
	}
	for _, s := range sizes[1:] {
		if s != "0B" {
			t.Errorf("squash history sizes %q: the base's entries hold no layer", sizes)
		}
	}
}

// runScenario runs sc in a new docker container named prefix+sc.name, left
// stopped for the test and removed after it.
func runScenario(t *testing.T, prefix string, sc scenario) fixtures.Container {
	t.Helper()
	c, err := fixtures.RunContainer(prefix+sc.name, fixtures.BaseImage, sc.script)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Remove)
	if sc.host != nil {
		sc.host(t, c.Upper)
	}
	return c
}

// TestSquashDockerContainer: docker:// on overlay2, and dir:// of the same
// container's filesystem against the same base, for every scenario.
func TestSquashDockerContainer(t *testing.T) {
	requireDocker(t)
	root := filepath.Join(t.TempDir(), "store")
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			c := runScenario(t, "snap-sq-", sc)
			t.Run("docker", func(t *testing.T) {
				squashEqualsLayers(t, root, "docker://"+c.Name, "docker-"+sc.name)
				if sc.name == "add" {
					checkSquashHistory(t, root, "docker-"+sc.name)
				}
			})
			t.Run("dir", func(t *testing.T) {
				base := strings.TrimSpace(cmd(t, fixtures.DockerBinary(), "inspect", "-f", "{{.Image}}", c.Name))
				squashEqualsLayers(t, root, "dir://"+rootfsOf(t, c).Root, "dir-"+sc.name, "--base", base)
			})
		})
	}
}

// TestSquashSnapContainer: snap's own containers (NAME), each with a bind
// volume, for every scenario. The init layer's stubs (/etc/hosts,
// /etc/resolv.conf, /etc/hostname) and the volume's mount point are in no
// commit of the container, squashed or not.
func TestSquashSnapContainer(t *testing.T) {
	testenv.Root(t, "snap run (namespaces, overlay mounts)")
	w := t.TempDir()
	root, base := filepath.Join(w, "store"), filepath.Join(w, "base")
	if err := fixtures.Base(base); err != nil {
		t.Fatal(err)
	}
	sh(t, fmt.Sprintf("tar -C %s --numeric-owner -czf %s/base.tgz .", base, w))
	mustSnap(t, root, "import", w+"/base.tgz", "snap-e2e/base:1")
	vol := filepath.Join(w, "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			name := "snap-sq-" + sc.name
			mustSnap(t, root, "run", "--name", name, "-v", vol+":/mnt/vol/here", "snap-e2e/base:1", "sh", "-c", sc.script)
			defer snapCLI(t, root, "rm", "-f", name)
			if sc.host != nil {
				st, err := store.Open(root)
				if err != nil {
					t.Fatal(err)
				}
				m := container.New(st)
				meta, err := m.Get(name)
				if err != nil {
					t.Fatal(err)
				}
				// A socket's path has room for 107 bytes; the upper's
				// path is longer: reach it through a short link.
				short, err := os.MkdirTemp("", "sq")
				if err != nil {
					t.Fatal(err)
				}
				defer os.RemoveAll(short)
				if err := os.Symlink(m.Upper(meta.ID), short+"/u"); err != nil {
					t.Fatal(err)
				}
				sc.host(t, short+"/u")
			}
			squashEqualsLayers(t, root, name, "snap-"+sc.name)
			st, err := store.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			tree, _ := flatten(t, st, "sq/snap-"+sc.name+":squash")
			for _, e := range tree {
				switch e.Name {
				case "etc/hosts", "etc/resolv.conf", "etc/hostname", "mnt", "mnt/vol", "mnt/vol/here":
					t.Errorf("the squash holds the runtime's %s", e.Name)
				}
			}
			if sc.name == "add" {
				checkSquashHistory(t, root, "snap-"+sc.name)
			}
		})
	}
}
