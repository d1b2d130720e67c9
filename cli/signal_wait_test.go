package cli

// Issue 8, item 8 against the GC lease: attacks written as regression tests.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitsOnFlock reports whether this process has a flock request blocked
// in the kernel (a "->" line of /proc/locks).
func waitsOnFlock(t *testing.T) bool {
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	pid := fmt.Sprint(os.Getpid())
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[1] == "->" && f[2] == "FLOCK" && f[5] == pid {
			return true
		}
	}
	return false
}

// Regression: while a prune holds the GC lock (it deletes what it found for as
// long as that takes, holding the index lock too), every command that
// reads the store waits for it in Store.Lease(context.Background()) or
// lockIndex: Images, Lookup, Tag, Remove, LayerDir(s), Put. A signal does
// not stop that wait, and cmd/snap swallows every signal after the first,
// so Ctrl-C and SIGTERM cannot stop `snap images` or `snap tag`; when the
// prune ends, `snap tag` then changes the index and exits 0 although the
// user stopped it. Item 8: every long operation stops on a signal.
func TestSignalledCommandsDoNotWaitForPrune(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(rootfs, tinyRootfs(t, map[string]string{"etc/motd": "hi\n"}), 0o644)
	if code := Run(t.Context(), []string{"snap", "--root", root, "import", rootfs, "a:1"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("import failed")
	}
	// What a running prune holds.
	prune := func() *os.File {
		f, err := os.OpenFile(filepath.Join(root, "gc.lock"), os.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, args := range [][]string{{"images"}, {"tag", "a:1", "b:1"}, {"inspect", "a:1"}, {"rmi", "a:1"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			lock := prune()
			defer func() {
				if lock != nil {
					lock.Close()
				}
			}()
			before := snapshot(t, root)
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(Signaled{Signal: syscall.SIGINT}) // Ctrl-C, already pressed
			done := make(chan int, 1)
			var out, errb bytes.Buffer
			go func() { done <- Run(ctx, append([]string{"snap", "--root", root}, args...), &out, &errb) }()
			var code int
			for waiting := false; ; {
				select {
				case code = <-done:
				default:
					if !waitsOnFlock(t) {
						time.Sleep(time.Millisecond) // polling, not a timed assertion
						continue
					}
					waiting = true
				}
				if waiting {
					t.Errorf("snap %s, signalled, waits for the prune to end", strings.Join(args, " "))
					lock.Close()
					lock = nil
					code = <-done
				}
				break
			}
			if code != 130 {
				t.Errorf("snap %s after SIGINT: exit %d, want 130; stdout %q stderr %q", strings.Join(args, " "), code, out.String(), errb.String())
			}
			if after := snapshot(t, root); after != before {
				t.Errorf("snap %s after SIGINT changed the index", strings.Join(args, " "))
			}
		})
	}
}
