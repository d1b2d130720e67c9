package diff

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"

	archive "github.com/moby/go-archive"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"snap/compression"
)

// Options tune the layer writer.
type Options struct {
	Compression compression.Compression
	// SourceDateEpoch, when set, clamps every newer mtime to it, so the same
	// tree gives the same digests however often it is written.
	SourceDateEpoch *time.Time
	// Sparse stores holes as PAX 1.0 sparse entries.
	Sparse bool
	// Progress, if set, is told after each entry how many entries and file
	// bytes are written so far. It runs on the writer's goroutine: keep it cheap.
	Progress func(entries int, bytes int64)
}

// Result describes a written layer: its tar, before compression. The blob
// as written is the business of w, which hashes and counts it if it needs
// to (the store's BlobWriter does): the bytes are hashed once per stream.
type Result struct {
	DiffID           digest.Digest // sha256 of the uncompressed tar
	UncompressedSize int64         // bytes of the uncompressed tar
	MediaType        string
	Entries          int
	// ContentSize is what docker shows as the layer's size: the bytes of its
	// regular files (hardlinked ones once) and symlink targets.
	ContentSize int64
}

// WriteLayer streams the changes of src to w as one OCI layer. Each file is
// read once; the diffID and the compression are computed as the bytes pass.
func WriteLayer(ctx context.Context, w io.Writer, src Walker, opts Options) (Result, error) {
	comp, err := compression.NewWriter(w, opts.Compression)
	if err != nil {
		return Result{}, err
	}
	diffID := sha256.New()
	var out *fanout
	if comp == nil {
		out = newFanout(diffID, w)
	} else {
		out = newFanout(diffID, comp)
	}
	// Headers, padding and small files would otherwise be a chunk each.
	bw := bufio.NewWriterSize(out, chunkSize)
	lw := &layerWriter{ctx: ctx, tw: tar.NewWriter(bw), raw: bw, opts: opts, links: map[inode]string{}, buf: make([]byte, chunkSize)}
	err = walkAhead(ctx, src, lw.add)
	if err == nil {
		if err = lw.tw.Close(); err == nil {
			err = bw.Flush()
		}
		if err != nil {
			err = fmt.Errorf("layer: %w", err)
		}
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("layer: %w", cerr)
	}
	if err != nil {
		compression.Abort(comp)
		return Result{}, err
	}
	if comp != nil {
		if err := comp.Close(); err != nil {
			return Result{}, fmt.Errorf("layer: compress: %w", err)
		}
	}
	return Result{
		DiffID:           digest.NewDigest(digest.SHA256, diffID),
		UncompressedSize: out.n,
		MediaType:        opts.Compression.MediaType(),
		Entries:          lw.entries,
		ContentSize:      lw.contentSize,
	}, nil
}

// inode keys the hardlinks: files written empty are a group apart, so that
// neither a kept file's content reaches a truncated path through a link
// entry nor the other way round.
type inode struct {
	dev, ino uint64
	empty    bool
}

type layerWriter struct {
	ctx         context.Context // a large file is read in chunks: each checks it
	tw          *tar.Writer
	raw         io.Writer // under tw, for entries archive/tar cannot write (sparse)
	opts        Options
	links       map[inode]string
	buf         []byte
	entries     int
	contentSize int64
}

func (lw *layerWriter) time(t time.Time) time.Time {
	t = t.Truncate(time.Second)
	if e := lw.opts.SourceDateEpoch; e != nil && t.After(*e) {
		return *e
	}
	return t
}

func (lw *layerWriter) write(h *tar.Header) error {
	lw.entries++
	if err := lw.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("layer /%s: %w", h.Name, err)
	}
	return nil
}

func (lw *layerWriter) add(p *pending) error {
	if p.c.Info != nil && p.c.Info.Mode()&fs.ModeSocket != 0 {
		return nil // a socket cannot be archived; docker skips them too
	}
	err := lw.addEntry(p)
	if lw.opts.Progress != nil {
		lw.opts.Progress(lw.entries, lw.contentSize)
	}
	return err
}

func (lw *layerWriter) addEntry(p *pending) error {
	c := p.c
	if c.Kind == Deleted {
		return lw.write(lw.whiteout(c))
	}
	h, err := lw.header(c)
	if err != nil {
		return err
	}
	if h.Typeflag == tar.TypeReg && h.Size > 0 {
		if p.ready == nil {
			return lw.content(c, h)
		}
		if p.err != nil {
			return fmt.Errorf("layer /%s: %w", c.Path, p.err)
		}
		if int64(len(p.data)) != h.Size {
			return fmt.Errorf("layer /%s: %w (file changed size while being read)", c.Path, io.ErrUnexpectedEOF)
		}
		if lw.opts.Sparse && h.Size > 2*512 {
			return lw.content(c, h) // holes are found through the fd
		}
		if err := lw.write(h); err != nil {
			return err
		}
		_, err := lw.tw.Write(p.data)
		return err
	}
	if err := lw.write(h); err != nil {
		return err
	}
	if c.Opaque {
		st := c.Info.Sys().(*syscall.Stat_t)
		return lw.write(&tar.Header{
			Typeflag: tar.TypeReg,
			Name:     path.Join(c.Path, archive.WhiteoutOpaqueDir),
			Mode:     int64(st.Mode & 0o777),
			Uid:      int(st.Uid),
			Gid:      int(st.Gid),
			ModTime:  time.Unix(0, 0),
			Format:   tar.FormatPAX,
		})
	}
	return nil
}

// whiteout is the entry that deletes c.Path: dir/.wh.name, an empty regular
// file. From an overlay upper it keeps the whiteout device's owner and time.
func (lw *layerWriter) whiteout(c Change) *tar.Header {
	dir, name := path.Split(c.Path)
	h := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     dir + archive.WhiteoutPrefix + name,
		Mode:     0o600,
		ModTime:  lw.time(time.Unix(0, 0)),
		Format:   tar.FormatPAX,
	}
	if wi := c.WhiteoutInfo; wi != nil {
		st := wi.Sys().(*syscall.Stat_t)
		h.Uid, h.Gid, h.ModTime = int(st.Uid), int(st.Gid), lw.time(wi.ModTime())
		if wi.Mode().IsRegular() { // an AUFS whiteout file travels as it is
			h.Mode = int64(st.Mode & 0o7777)
		}
	}
	return h
}

func (lw *layerWriter) header(c Change) (*tar.Header, error) {
	st, ok := c.Info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("layer /%s: no stat", c.Path)
	}
	h := &tar.Header{
		Name:    c.Path,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: lw.time(c.Info.ModTime()),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		h.Typeflag, h.Name = tar.TypeDir, c.Path+"/"
	case syscall.S_IFREG:
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		if c.Empty {
			// Never opened: checked to still be the file the walk saw, as
			// a read would check it, so a racing swap fails the same way.
			if err := checkEmpty(c, st); err != nil {
				return nil, fmt.Errorf("layer /%s: %w", c.Path, err)
			}
			h.Size = 0
		}
		if st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino, c.Empty}
			if first, ok := lw.links[key]; ok {
				h.Typeflag, h.Size, h.Linkname = tar.TypeLink, 0, first
			} else {
				lw.links[key] = c.Path
			}
		}
		lw.contentSize += h.Size
	case syscall.S_IFLNK:
		target, err := c.link, error(nil)
		switch {
		case c.linkKnown:
		case c.tree != nil:
			target, err = c.tree.readlink(c.Path, st)
		default:
			target, err = os.Readlink(c.Abs)
		}
		if err != nil {
			return nil, fmt.Errorf("layer /%s: %w", c.Path, err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
		lw.contentSize += int64(len(target))
	case syscall.S_IFCHR, syscall.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev))) // uint32 on mips
	case syscall.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("layer /%s: cannot archive file type %v", c.Path, c.Info.Mode().Type())
	}
	xa := c.Xattrs
	if !c.xattrsKnown {
		var err error
		if c.tree != nil {
			xa, err = c.tree.xattrs(c.Path)
		} else {
			xa, err = Xattrs(c.Abs)
		}
		if err != nil {
			return nil, fmt.Errorf("layer /%s: %w", c.Path, err)
		}
	}
	if len(xa) > 0 {
		h.PAXRecords = make(map[string]string, len(xa))
		for k, v := range xa {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return h, nil
}

// checkEmpty checks, without opening it (O_PATH: no fifo blocks, no
// symlink is followed), that a file to be written empty is still the one
// the walk saw.
func checkEmpty(c Change, saw *syscall.Stat_t) error {
	if c.tree == nil {
		return nil
	}
	fd, err := openBeneath(c.tree.fd, c.Path, unix.O_PATH)
	if err != nil {
		if raceErrno(err) {
			return changedErr(err)
		}
		return err
	}
	return closeErr(fd, checkFD(fd, saw))
}

// closeErr closes fd unless err says checkFD already did.
func closeErr(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// openContent opens a regular file's content: beneath the walk's root, as
// the file the walk saw, for the walkers' own changes (see tree).
func openContent(c Change) (int, error) {
	if c.tree != nil {
		st, _ := c.Info.Sys().(*syscall.Stat_t)
		return c.tree.openFile(c.Path, st)
	}
	return unix.Open(c.Abs, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
}

// noWriteTo hides os.File's WriteTo so io.CopyBuffer uses our large buffer.
type noWriteTo struct{ io.Reader }

// content writes a regular file's header and bytes. It reads through the
// raw fd: os.File's poller registration costs three syscalls per file, which
// is most of the time on a layer of many small files.
func (lw *layerWriter) content(c Change, h *tar.Header) error {
	fd, err := openContent(c)
	if err != nil {
		return fmt.Errorf("layer /%s: %w", c.Path, err)
	}
	if lw.opts.Sparse {
		f := os.NewFile(uintptr(fd), c.Abs)
		defer f.Close()
		return lw.sparseContent(c, h, f)
	}
	defer unix.Close(fd)
	if err := lw.write(h); err != nil {
		return err
	}
	return lw.copyFD(c, h, fd)
}

func (lw *layerWriter) copyFD(c Change, h *tar.Header, fd int) error {
	var n int64
	for n < h.Size {
		want := int(min(int64(len(lw.buf)), h.Size-n))
		if err := lw.ctx.Err(); err != nil {
			return err
		}
		r, err := unix.Read(fd, lw.buf[:want])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("layer /%s: %w", c.Path, err)
		}
		if r == 0 {
			return fmt.Errorf("layer /%s: %w (file shrank while being read)", c.Path, io.ErrUnexpectedEOF)
		}
		if _, err := lw.tw.Write(lw.buf[:r]); err != nil {
			return fmt.Errorf("layer /%s: %w", c.Path, err)
		}
		n += int64(r)
	}
	return nil
}

// sparseContent writes f as a PAX sparse entry when it has holes.
func (lw *layerWriter) sparseContent(c Change, h *tar.Header, f *os.File) error {
	holes, err := dataExtents(f, h.Size)
	if err != nil {
		return fmt.Errorf("layer /%s: %w", c.Path, err)
	}
	if holes == nil {
		if err := lw.write(h); err != nil {
			return err
		}
		return lw.copyFD(c, h, int(f.Fd()))
	}
	lw.entries++
	if err := lw.tw.Flush(); err != nil {
		return err
	}
	return writeSparse(lw.raw, f, h, holes, lw.buf)
}
