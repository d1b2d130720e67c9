package diff

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLeasedFileIsReadOnceTheLeaseBreaks: a process in the container holds
// a write lease on a file (Samba's oplocks are leases). Opening the file
// tells the holder to let go (SIGIO) and waits for it, at most
// /proc/sys/fs/lease-break-time, as docker's own read of the file does.
// snap opens with O_NONBLOCK (so that a fifo swapped in cannot hang it),
// which turns the lease into EWOULDBLOCK, retried at once 16 times as if
// it were openat2's rename EAGAIN, then reported as the file having
// changed during the commit: it did not, and the commit fails. Here the
// holder lets go shortly after it is told; the layer must hold the file.
func TestLeasedFileIsReadOnceTheLeaseBreaks(t *testing.T) {
	requireRoot(t)
	eachMode(t, func(t *testing.T, root string, src Walker) {
		write(t, filepath.Join(root, "f"), "leased")
		fd, err := unix.Open(filepath.Join(root, "f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, unix.SIGIO)
		defer signal.Stop(sig)
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
			t.Fatalf("F_SETLEASE: %v", err)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			// The holder lets go when the kernel asks, a moment later,
			// as a real one does (not within snap's back-to-back
			// retries); never if the commit has given up by then.
			select {
			case <-sig:
			case <-stop:
				return
			}
			select {
			case <-time.After(200 * time.Millisecond):
				unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
			case <-stop:
			}
		}()
		var buf bytes.Buffer
		if _, err := WriteLayer(context.Background(), &buf, src, Options{}); err != nil {
			t.Fatalf("a leased file that never changed fails the commit: %v", err)
		}
		if !bytes.Contains(buf.Bytes(), []byte("leased")) {
			t.Fatal("the layer lacks the leased file's bytes")
		}
	})
}
