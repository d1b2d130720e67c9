package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/internal/archivetest"
	"snap/internal/fixtures"
	"snap/store"
)

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := fixtures.Docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func shell(t *testing.T, script string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", script, err, out)
	}
}

// TestSaveIsDockerSave loads what docker 20.10's `docker save` wrote, plain
// and gzipped, with layers stored gzip, zstd or plain, and saves it again:
// the archive must be docker's, byte for byte (its legacy v1 layer IDs, json
// and VERSION files, uncompressed layer.tar, order and headers).
func TestSaveIsDockerSave(t *testing.T) {
	requireDocker(t)
	w := t.TempDir()
	name := fmt.Sprintf("snaptest-archive-%d", os.Getpid())
	tag := "snaptest-archive/saved:" + fmt.Sprint(os.Getpid())
	docker(t, "run", "--name", name, fixtures.BaseImage, "sh", "-c", "echo saved > /saved && mkdir -p /opt && echo x > /opt/x")
	defer fixtures.Docker("rm", "-f", name)
	docker(t, "commit", "-m", "saved by docker", "-c", "ENV SAVED=1", name, tag)
	defer fixtures.Docker("rmi", "-f", tag)
	dockerTar := filepath.Join(w, "docker.tar")
	docker(t, "save", "-o", dockerTar, tag)
	want, err := os.ReadFile(dockerTar)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dockerTar+".gz", archivetest.Gzip(t, want), 0o644)
	for _, in := range []string{dockerTar, dockerTar + ".gz"} {
		for _, comp := range []string{"gzip", "zstd", "none"} {
			t.Run(filepath.Base(in)+" stored "+comp, func(t *testing.T) {
				root := filepath.Join(t.TempDir(), "store")
				runOut(t, "--root", root, "load", "--compression", comp, "-i", in)
				out := filepath.Join(t.TempDir(), "snap.tar")
				runOut(t, "--root", root, "save", "-o", out, tag)
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					shell(t, fmt.Sprintf("tar tvf %s > %s.list; tar tvf %s > %s.list", out, out, dockerTar, out+"-docker"))
					d, _ := exec.Command("diff", out+"-docker.list", out+".list").CombinedOutput()
					t.Errorf("snap save differs from docker save (%d bytes, docker's %d):\n%s", len(got), len(want), d)
				}
			})
		}
	}
}

// TestSaveMixedCompressionIsValid saves an image whose layers are stored
// gzip, zstd and uncompressed, some with their uncompressed size recorded
// and some without (stores written before it was): go-containerregistry's
// validator (crane validate --tarball) must accept the archive, docker must
// load and run it, and docker's save of it must be the same bytes.
func TestSaveMixedCompressionIsValid(t *testing.T) {
	requireDocker(t)
	w := t.TempDir()
	root := filepath.Join(w, "store")
	rootfs := filepath.Join(w, "rootfs")
	if err := fixtures.Base(rootfs); err != nil {
		t.Fatal(err)
	}
	shell(t, fmt.Sprintf("tar -C %s --numeric-owner -cf %s/base.tar .", rootfs, w))
	repo := fmt.Sprintf("snaptest-archive/mixed-%d", os.Getpid())
	runOut(t, "--root", root, "import", "--compression", "gzip", w+"/base.tar", repo+":0")
	shell(t, "echo one > "+rootfs+"/one")
	runOut(t, "--root", root, "commit", "--compression", "zstd", "--base", repo+":0", "dir://"+rootfs, repo+":1")
	shell(t, "echo two > "+rootfs+"/two")
	runOut(t, "--root", root, "commit", "--compression", "none", "-c", `CMD ["/bin/cat", "/one", "/two"]`, "--base", repo+":1", "dir://"+rootfs, repo+":2")

	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Lookup(repo + ":2")
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	var bare []ocispec.Descriptor
	for _, l := range img.Manifest.Layers {
		types = append(types, l.MediaType)
		l.Annotations = nil
		bare = append(bare, l)
	}
	if want := []string{ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer}; strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("layers %v, want %v", types, want)
	}
	if _, err := st.Put(img.RawConfig, bare, []string{repo + ":bare"}); err != nil {
		t.Fatal(err)
	}

	for _, tag := range []string{repo + ":2", repo + ":bare"} {
		t.Run(tag, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "saved.tar")
			runOut(t, "--root", root, "save", "-o", out, tag)
			timg, err := tarball.ImageFromPath(out, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(timg); err != nil {
				t.Errorf("crane validate --tarball: %v", err)
			}
			docker(t, "load", "-i", out)
			defer fixtures.Docker("rmi", "-f", tag)
			if got := docker(t, "run", "--rm", tag); got != "one\ntwo\n" {
				t.Errorf("docker run %s printed %q", tag, got)
			}
			// What docker then saves of it is what snap saved.
			again := filepath.Join(t.TempDir(), "docker.tar")
			docker(t, "save", "-o", again, tag)
			a, _ := os.ReadFile(out)
			b, _ := os.ReadFile(again)
			if !bytes.Equal(a, b) {
				t.Errorf("docker save of the loaded image differs from snap save (%d bytes, snap's %d)", len(b), len(a))
			}
		})
	}
}
