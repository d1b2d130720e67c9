package diff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSwapDirForSymlinkNeverLeaksTheHost is issue 8 item 5: while a layer
// is written from a tree that is not paused, something inside it swaps a
// directory d (holding f) with a symlink s to a host directory holding a
// canary f (renameat2 RENAME_EXCHANGE, in a loop). No layer may ever hold
// the canary; an error is acceptable only as ErrChanged naming the path.
// Overlay mode swaps through the merged mount, as a container would;
// rootfs mode swaps in the rootfs itself. 100 layers each, also with the
// fallbacks for kernels without openat2 (5.6) and getxattrat (6.13).
func TestSwapDirForSymlinkNeverLeaksTheHost(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		mode     string
		fallback bool
	}{{"overlay", false}, {"rootfs", false}, {"overlay", true}, {"rootfs", true}} {
		name := tc.mode
		if tc.fallback {
			name += "-fallback"
		}
		t.Run(name, func(t *testing.T) {
			if tc.fallback {
				noOpenat2.Store(true)
				noXattrat.Store(true)
				t.Cleanup(func() { noOpenat2.Store(false); noXattrat.Store(false) })
			}
			mode := tc.mode
			lower := baseTree(t)
			host := t.TempDir() // outside every root below
			canary := fmt.Sprintf("CANARY-%d-%d", os.Getpid(), time.Now().UnixNano())
			write(t, filepath.Join(host, "f"), canary)
			inside := strings.Repeat("i", len(canary)) // same size: a size check alone cannot catch the swap

			var src Walker
			var swapRoot string
			switch mode {
			case "overlay":
				w := t.TempDir()
				upper, work, merged := filepath.Join(w, "upper"), filepath.Join(w, "work"), filepath.Join(w, "merged")
				for _, d := range []string{upper, work, merged} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
					t.Fatalf("mount overlay: %v", err)
				}
				t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
				src, swapRoot = Overlay{Upper: upper, Lowers: []string{lower}}, merged
			case "rootfs":
				root := copyTar(t, lower)
				src, swapRoot = Rootfs{Root: root, Lowers: []string{lower}}, root
			}
			write(t, filepath.Join(swapRoot, "d/f"), inside)
			if err := os.Symlink(host, filepath.Join(swapRoot, "s")); err != nil {
				t.Fatal(err)
			}
			// The swap must work before the race means anything.
			d, s := filepath.Join(swapRoot, "d"), filepath.Join(swapRoot, "s")
			if err := unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, s, unix.RENAME_EXCHANGE); err != nil {
				t.Fatalf("renameat2 RENAME_EXCHANGE: %v", err)
			}

			var stop atomic.Bool
			var swaps atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					if err := unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, s, unix.RENAME_EXCHANGE); err == nil {
						swaps.Add(1)
					}
				}
			}()
			clean, changed := 0, 0
			var failures []string
			for round := range 100 {
				var buf bytes.Buffer
				_, err := WriteLayer(context.Background(), &buf, src, Options{})
				if bytes.Contains(buf.Bytes(), []byte(canary)) {
					failures = append(failures, fmt.Sprintf("round %d: the layer holds the host's canary file (err %v)", round, err))
					continue
				}
				switch {
				case err == nil:
					clean++
				case errors.Is(err, ErrChanged) && (strings.Contains(err.Error(), "/d") || strings.Contains(err.Error(), "/s")):
					changed++
				default:
					failures = append(failures, fmt.Sprintf("round %d: %v (want a clean %q error naming /d or /s)", round, err, ErrChanged))
				}
			}
			stop.Store(true)
			wg.Wait()
			t.Logf("%d swaps; %d layers clean, %d refused as changed during the commit", swaps.Load(), clean, changed)
			if len(failures) > 0 {
				t.Fatalf("%d of 100 rounds failed:\n%s", len(failures), strings.Join(failures, "\n"))
			}
		})
	}
}
