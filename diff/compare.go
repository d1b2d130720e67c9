package diff

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"snap/internal/fdpath"
)

// verdict is what comparing an entry with the lower one found, with what
// was read on the way (xattrs, link target) so that nobody reads it twice.
type verdict struct {
	changed     bool
	xattrs      map[string]string
	xattrsKnown bool
	link        string
	linkKnown   bool
}

// compareMeta compares an entry (name in dir d, stat info) with the lower
// one the way docker's ChangesDirs does (mode, owner, rdev; size and mtime
// for non-directories), plus link targets, xattrs and, for a layer (links),
// the link count of regular files. Where the metadata cannot decide, the
// content does: see sameTime.
func compareMeta(d *dir, name string, info fs.FileInfo, le *lowerEntry, links bool) (v verdict, err error) {
	a, aok := info.Sys().(*syscall.Stat_t)
	b, bok := le.info.Sys().(*syscall.Stat_t)
	if !aok || !bok {
		v.changed = true
		return v, nil
	}
	if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Rdev != b.Rdev {
		v.changed = true
		return v, nil
	}
	typ := a.Mode & syscall.S_IFMT
	// A new hardlink to an unchanged file changes the file's link count: the
	// file must travel with the layer so the new name can link to it.
	if links && typ == syscall.S_IFREG && a.Nlink != b.Nlink {
		v.changed = true
		return v, nil
	}
	content := false
	if typ != syscall.S_IFDIR {
		if a.Size != b.Size {
			v.changed = true
			return v, nil
		}
		switch sameTime(a.Mtim, b.Mtim) {
		case timeDiffers:
			v.changed = true
			return v, nil
		case timeUnsure:
			content = typ == syscall.S_IFREG && a.Size > 0
		}
	}
	if typ == syscall.S_IFLNK {
		if v.link, err = d.readlink(name); err != nil {
			return v, err
		}
		v.linkKnown = true
		t2, err := fdpath.Readlink(le.dir.fd, le.name)
		if err != nil {
			return v, &fs.PathError{Op: "readlink", Path: le.abs, Err: err}
		}
		if v.link != t2 {
			v.changed = true
			return v, nil
		}
	}
	if v.xattrs, _, err = d.xattrs(name); err != nil {
		return v, err
	}
	v.xattrsKnown = true
	x2, _, err := le.dir.xattrs(le.name)
	if err != nil {
		return v, err
	}
	if !maps.Equal(v.xattrs, x2) {
		v.changed = true
		return v, nil
	}
	if content {
		same, err := sameContent(d, name, a, le.dir, le.name, b)
		if err != nil {
			return v, err
		}
		v.changed = !same
	}
	return v, nil
}

type timeVerdict int

const (
	timeEqual timeVerdict = iota
	timeDiffers
	timeUnsure
)

// sameTime compares two mtimes the way metadata can be trusted to. A tar
// keeps whole seconds (docker's layers, every lower unpacked from one), so
// a side with 0 ns may be any time in that second: docker's sameFsTime calls
// that equal, and so loses an edit made in the same second at the same size
// (issue 8: 5 of 5 rapid dir:// commits). Here that case, and two equal
// whole seconds, are unsure: the content decides. Equal non-zero
// nanoseconds are equal; anything else differs.
func sameTime(a, b syscall.Timespec) timeVerdict {
	switch {
	case a.Sec != b.Sec:
		return timeDiffers
	case a.Nsec == b.Nsec && a.Nsec != 0:
		return timeEqual
	case a.Nsec == 0 || b.Nsec == 0:
		return timeUnsure
	}
	return timeDiffers
}

// compareChunk bounds the memory of one comparison: most files in a rootfs
// are smaller and take one read a side.
const compareChunk = 32 << 10

var compareBufs = sync.Pool{New: func() any { return new([2][compareChunk]byte) }}

// sameContent compares two regular files of the same size byte by byte,
// streaming. The new one (in d, hostile) is opened without following a
// symlink and must still be the file the walk listed (st).
func sameContent(d *dir, name string, st *syscall.Stat_t, ld *dir, lname string, lst *syscall.Stat_t) (bool, error) {
	if st.Dev == lst.Dev && st.Ino == lst.Ino {
		return true, nil // one inode (a hardlinked copy of the lower): one content
	}
	fa, err := d.openFile(name, st)
	if err != nil {
		return false, err
	}
	defer unix.Close(fa)
	fb, err := ld.openFile(lname, nil)
	if err != nil {
		return false, err
	}
	defer unix.Close(fb)
	bufs := compareBufs.Get().(*[2][compareChunk]byte)
	defer compareBufs.Put(bufs)
	for left := st.Size; left > 0; {
		n := int(min(left, compareChunk))
		if err := readFull(fa, bufs[0][:n]); err != nil {
			if err == io.ErrUnexpectedEOF {
				err = changedErr(fmt.Errorf("file shrank while being read"))
			}
			return false, &fs.PathError{Op: "read", Path: d.path + "/" + name, Err: err}
		}
		if err := readFull(fb, bufs[1][:n]); err != nil {
			return false, &fs.PathError{Op: "read", Path: ld.path + "/" + lname, Err: err}
		}
		if !bytes.Equal(bufs[0][:n], bufs[1][:n]) {
			return false, nil
		}
		left -= int64(n)
	}
	return true, nil
}

// readFull fills buf from fd; io.ErrUnexpectedEOF if the file ends first.
func readFull(fd int, buf []byte) error {
	for n := 0; n < len(buf); {
		r, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if r == 0 {
			return io.ErrUnexpectedEOF
		}
		n += r
	}
	return nil
}
