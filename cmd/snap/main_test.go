package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"snap/internal/fixtures"
	"snap/store"
)

// buildSnap builds the snap binary the tests run as users do.
func buildSnap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "snap")
	if err := fixtures.BuildSnap(bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func gz(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// tarHeader is the header block of a regular file of size bytes, with no
// data after it.
func tarHeader(t *testing.T, name string, size int64) []byte {
	var b bytes.Buffer
	if err := tar.NewWriter(&b).WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// putZeroImage stores an image whose one gzip layer is small on disk and
// decompresses to 20 GiB of zeros: a file's tar header, then gzip members
// of 1 MiB of zeros each. Its diff_id is not the content's (that would
// take hashing 20 GiB): a save reads the whole layer before it checks it.
func putZeroImage(t *testing.T, st *store.Store, tag string, annotate bool) {
	const members = 20 << 10
	bw, err := st.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	defer bw.Abort()
	bw.Write(gz(t, tarHeader(t, "zeros", members<<20-2048)))
	zero := gz(t, make([]byte, 1<<20))
	for range members {
		if _, err := bw.Write(zero); err != nil {
			t.Fatal(err)
		}
	}
	d, err := bw.Commit()
	if err != nil {
		t.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: bw.Size()}
	if annotate {
		desc.Annotations = map[string]string{store.AnnotationUncompressedSize: strconv.Itoa(512 + members<<20)}
	}
	cfg, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		Config:   ocispec.ImageConfig{Labels: map[string]string{"tag": tag}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("not checked")}},
	})
	if _, err := st.Put(cfg, []ocispec.Descriptor{desc}, []string{tag}); err != nil {
		t.Fatal(err)
	}
}

// endlessTar writes a valid tar stream that never ends: a header announcing
// a 1 TiB file, then zeros, until the reader goes away.
func endlessTar(t *testing.T) func(io.Writer) {
	return func(w io.Writer) {
		if _, err := w.Write(tarHeader(t, "endless", 1<<40)); err != nil {
			return
		}
		endlessZeros(w)
	}
}

func endlessZeros(w io.Writer) {
	buf := make([]byte, 1<<20)
	for {
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// TestSignalStopsLongCommands runs snap's long operations on input that
// never ends (or takes minutes), signals them after a second, and checks
// that they stop promptly with 128+signal, leave no temp file in the store
// or beside an -o file, and leave the index as it was.
func TestSignalStopsLongCommands(t *testing.T) {
	bin := buildSnap(t)
	w := t.TempDir()
	root := filepath.Join(w, "store")
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	putZeroImage(t, st, "zeros:annotated", true)
	putZeroImage(t, st, "zeros:counted", false)
	rootfs := filepath.Join(w, "rootfs")
	os.Mkdir(rootfs, 0o755)
	if err := os.WriteFile(filepath.Join(rootfs, "small"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(rootfs, "hole"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(100 << 30) // 100 GiB that takes no disk, and minutes to read
	f.Close()
	out := filepath.Join(w, "out", "saved.tar")
	os.Mkdir(filepath.Dir(out), 0o755)

	tests := []struct {
		name  string
		args  []string
		stdin func(io.Writer) // nil: no stdin; a func that returns at once: a pipe nobody writes to
		sig   syscall.Signal
	}{
		{"import /dev/zero, SIGINT", []string{"import", "/dev/zero", "x:1"}, nil, syscall.SIGINT},
		{"import /dev/zero, SIGTERM", []string{"import", "/dev/zero", "x:1"}, nil, syscall.SIGTERM},
		{"import endless stdin", []string{"import", "-", "x:1"}, endlessZeros, syscall.SIGINT},
		{"load endless valid stream, SIGINT", []string{"load"}, endlessTar(t), syscall.SIGINT},
		{"load endless valid stream, SIGTERM", []string{"load"}, endlessTar(t), syscall.SIGTERM},
		{"load from a pipe nobody writes to", []string{"load"}, func(io.Writer) {}, syscall.SIGTERM},
		{"import from a pipe nobody writes to", []string{"import", "-", "x:1"}, func(io.Writer) {}, syscall.SIGINT},
		{"commit a 100 GiB file", []string{"commit", "dir://" + rootfs, "c:1"}, nil, syscall.SIGINT},
		{"save a 20 GiB layer to a file, counting it", []string{"save", "-o", out, "zeros:counted"}, nil, syscall.SIGINT},
		{"save a 20 GiB layer to a file, streaming it", []string{"save", "-o", out, "zeros:annotated"}, nil, syscall.SIGTERM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, err := os.ReadFile(filepath.Join(root, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, append([]string{"--root", root}, tc.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			var stdin io.WriteCloser
			if tc.stdin != nil {
				if stdin, err = cmd.StdinPipe(); err != nil {
					t.Fatal(err)
				}
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if stdin != nil {
				go tc.stdin(stdin)
				defer stdin.Close() // after the exit: a pipe nobody writes to stays open
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case <-exited:
				t.Fatalf("exited before the signal: %v: %s", cmd.ProcessState, stderr.String())
			case <-time.After(time.Second):
			}
			cmd.Process.Signal(tc.sig)
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("still running 30 s after %v", tc.sig)
			}
			if got, want := cmd.ProcessState.ExitCode(), 128+int(tc.sig); got != want {
				t.Errorf("exit %d (%v), want %d; stderr %q", got, cmd.ProcessState, want, stderr.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("stderr %q: the stop is no error to report", stderr.String())
			}
			after, _ := os.ReadFile(filepath.Join(root, "index.json"))
			if !bytes.Equal(before, after) {
				t.Errorf("index changed:\n%s\n->\n%s", before, after)
			}
			filepath.WalkDir(w, func(p string, d fs.DirEntry, err error) error {
				if err == nil && (strings.HasPrefix(d.Name(), ".tmp-") || strings.Contains(d.Name(), ".tmp-") || p == out) {
					t.Errorf("left behind: %s", p)
				}
				return nil
			})
		})
	}
}
