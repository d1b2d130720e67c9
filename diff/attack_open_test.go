package diff

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openWatch reports the names in dir that anything opened (IN_OPEN) since
// it was set up. The kernel queues the event inside open(2), before open
// returns, so reading it afterwards needs no waiting. An O_PATH open makes
// no event: it reaches no driver.
func openWatch(t *testing.T, dir string) func() []string {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		var names []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if err == unix.EAGAIN {
				return names
			}
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				names = append(names, string(bytes.TrimRight(name, "\x00")))
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// TestSwappedInDeviceIsNeverOpened: the walk lists f as a regular file; a
// process in the tree then replaces it with a device node (a container may
// mknod any device: its device cgroup stops it opening one, not making
// one) or a fifo, before the writer (or the content comparison) opens f.
// The re-check after open refuses it, but by then snap, root on the host
// and outside the container's device cgroup, has opened the device: the
// driver's open has run (a watchdog starts its countdown on open and
// reboots the host unless told otherwise before close; a tape rewinds; a
// fifo wakes a writer blocked in open). What the walk did not list as a
// regular file must never be opened for reading: open O_PATH, fstat, and
// only then reopen the same inode.
func TestSwappedInDeviceIsNeverOpened(t *testing.T) {
	requireRoot(t)
	writer := func(root string, saw *syscall.Stat_t) error {
		tr, err := openTree(root)
		if err != nil {
			return err
		}
		defer tr.release()
		fd, err := tr.openFile("f", saw)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	opens := map[string]func(root string, saw *syscall.Stat_t) error{
		"writer (tree.openFile)": writer,
		"compare (dir.openFile)": func(root string, saw *syscall.Stat_t) error {
			d, err := openDir(root)
			if err != nil {
				return err
			}
			defer d.close()
			fd, err := d.openFile("f", saw)
			if err == nil {
				unix.Close(fd)
			}
			return err
		},
		"writer without openat2": func(root string, saw *syscall.Stat_t) error {
			noOpenat2.Store(true)
			defer noOpenat2.Store(false)
			return writer(root, saw)
		},
	}
	swaps := map[string]func(p string) error{
		"char device 1/3": func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) },
		"fifo":            func(p string) error { return unix.Mkfifo(p, 0o666) },
	}
	for oname, open := range opens {
		for sname, swap := range swaps {
			t.Run(oname+"/"+sname, func(t *testing.T) {
				root := t.TempDir()
				f := filepath.Join(root, "f")
				write(t, f, "listed as a regular file")
				var saw syscall.Stat_t
				if err := syscall.Lstat(f, &saw); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
				if err := swap(f); err != nil {
					t.Fatal(err)
				}
				opened := openWatch(t, root)
				err := open(root, &saw)
				if !errors.Is(err, ErrChanged) {
					t.Errorf("err = %v, want %v", err, ErrChanged)
				}
				if slices.Contains(opened(), "f") {
					t.Errorf("the %s swapped in for a listed regular file was opened (IN_OPEN): its driver's open ran as host root", sname)
				}
			})
		}
	}
}
