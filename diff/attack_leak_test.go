package diff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"snap/compression"
)

// failAfter is a blob sink that breaks after n bytes, as a full disk does.
type failAfter struct{ n int }

var errSinkFull = errors.New("sink full")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errSinkFull
	}
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, errSinkFull
	}
	f.n -= len(p)
	return len(p), nil
}

// cancelAt is a Walker that cancels the commit's context at its k-th change.
type cancelAt struct {
	src    Walker
	k      int
	cancel context.CancelFunc
}

func (c cancelAt) Walk(ctx context.Context, fn func(Change) error) error {
	i := 0
	return c.src.Walk(ctx, func(ch Change) error {
		if i++; i == c.k {
			c.cancel()
		}
		return fn(ch)
	})
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// baseGoroutines counts goroutines once the count stops falling (bounded),
// so that those merely finishing are not counted as the baseline.
func baseGoroutines() int {
	n, same := runtime.NumGoroutine(), 0
	for i := 0; i < 200 && same < 3; i++ {
		time.Sleep(5 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m < n {
			n, same = m, 0
		} else {
			same++
		}
	}
	return n
}

// settledGoroutines waits (bounded) for goroutines that are merely
// finishing, so that only leaked ones remain counted.
func settledGoroutines(limit int) int {
	n := runtime.NumGoroutine()
	for i := 0; i < 200 && n > limit; i++ {
		time.Sleep(5 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// TestWriteLayerErrorPathsLeakNothing fails WriteLayer in each way a
// commit can fail (the blob's disk fills, the command is interrupted, the
// tree holds something unarchivable) with each compression, many times,
// and counts open fds and goroutines: a long-lived caller (a daemon, the
// conformance suite) must not grow with every failed commit.
func TestWriteLayerErrorPathsLeakNothing(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	// Enough small files to fill the read-ahead queue, and enough bytes
	// (several compressor blocks) that the compressors have work in flight.
	for i := range 300 {
		write(t, filepath.Join(root, fmt.Sprintf("a/%03d", i)), strings.Repeat("s", 100+i))
	}
	big := make([]byte, 1200<<10) // more than one pgzip block (gzipBlock)
	x := uint32(1)
	for i := range big {
		x = x*1664525 + 1013904223
		big[i] = byte(x >> 24)
	}
	write(t, filepath.Join(root, "b/big"), string(big))
	bad := t.TempDir()
	if err := os.CopyFS(bad, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(bad, "z/.wh.bad"), "") // refused after all the rest
	const rounds = 10
	causes := []struct {
		name string
		run  func(comp compression.Compression) error
	}{
		{"sink fails", func(comp compression.Compression) error {
			_, err := WriteLayer(context.Background(), &failAfter{n: 4 << 10}, Rootfs{Root: root}, Options{Compression: comp})
			return err
		}},
		{"context cancelled mid-walk", func(comp compression.Compression) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := WriteLayer(ctx, discard{}, cancelAt{src: Rootfs{Root: root}, k: 302, cancel: cancel}, Options{Compression: comp})
			return err
		}},
		{"tree refused late", func(comp compression.Compression) error {
			_, err := WriteLayer(context.Background(), discard{}, Rootfs{Root: bad}, Options{Compression: comp})
			return err
		}},
		{"overlay tree refused late", func(comp compression.Compression) error {
			_, err := WriteLayer(context.Background(), discard{}, Overlay{Upper: bad}, Options{Compression: comp})
			return err
		}},
	}
	for _, comp := range []compression.Compression{compression.None, compression.Gzip, compression.Zstd} {
		for _, cause := range causes {
			t.Run(string(comp)+"/"+cause.name, func(t *testing.T) {
				if err := cause.run(comp); err == nil {
					t.Fatal("WriteLayer succeeded; the test needs it to fail")
				}
				fds, gs := countFDs(t), baseGoroutines()
				for range rounds {
					if err := cause.run(comp); err == nil {
						t.Fatal("WriteLayer succeeded; the test needs it to fail")
					}
				}
				// A leak of one per failure shows as rounds more; a few
				// may be runtime or poller goroutines starting up.
				if got := countFDs(t); got > fds+2 {
					t.Errorf("%d failed layers left %d more open fds", rounds, got-fds)
				}
				if got := settledGoroutines(gs + 2); got > gs+2 {
					t.Errorf("%d failed layers left %d more goroutines", rounds, got-gs)
				}
			})
		}
	}
}
