package diff

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	stdmaps "maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// extent is a run of data in a sparse file: offset and length.
type extent struct{ off, n int64 }

// dataExtents finds the data runs of f with SEEK_DATA/SEEK_HOLE. It returns
// nil when the file has no holes (or the filesystem cannot tell).
func dataExtents(f *os.File, size int64) ([]extent, error) {
	fd := int(f.Fd())
	ext := []extent{}
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if d >= size {
			break
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		h = min(h, size)
		ext = append(ext, extent{d, h - d})
		off = h
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if len(ext) == 1 && ext[0] == (extent{0, size}) {
		return nil, nil
	}
	return ext, nil
}

// paxRecord formats one "LEN key=value\n" record, LEN counting itself.
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body)
	for {
		s := strconv.Itoa(n) + body
		if len(s) == n {
			return s
		}
		n = len(s)
	}
}

// headerBlock encodes h as one ustar block with archive/tar; h must fit ustar.
func headerBlock(h *tar.Header) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	h.Format = tar.FormatUSTAR
	if err := tw.WriteHeader(h); err != nil {
		return nil, err
	}
	if b.Len() != 512 {
		return nil, fmt.Errorf("header for %s does not fit one block", h.Name)
	}
	return b.Bytes(), nil
}

// retype changes a block's typeflag and fixes its checksum; archive/tar
// refuses to write extended headers by hand.
func retype(blk []byte, flag byte) {
	blk[156] = flag
	copy(blk[148:156], "        ")
	sum := 0
	for _, c := range blk {
		sum += int(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func padding(n int64) []byte { return make([]byte, (512-n%512)%512) }

// writeSparse writes a PAX 1.0 sparse entry (GNU tar --sparse-version=1.0),
// which Go's archive/tar and GNU tar read back as the full file. archive/tar
// has no writer for it, so the blocks are written here, after tw.Flush.
func writeSparse(w io.Writer, f *os.File, h *tar.Header, ext []extent, buf []byte) error {
	size := h.Size
	mapping := []extent(slices.Clone(ext))
	if n := len(mapping); n == 0 || mapping[n-1].off+mapping[n-1].n < size {
		mapping = append(mapping, extent{size, 0}) // records the trailing hole
	}
	var sm strings.Builder
	sm.WriteString(strconv.Itoa(len(mapping)) + "\n")
	var data int64
	for _, e := range mapping {
		sm.WriteString(strconv.FormatInt(e.off, 10) + "\n" + strconv.FormatInt(e.n, 10) + "\n")
		data += e.n
	}
	smap := sm.String()
	smap += string(padding(int64(len(smap))))

	recs := map[string]string{
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     h.Name,
		"GNU.sparse.realsize": strconv.FormatInt(size, 10),
	}
	for k, v := range h.PAXRecords {
		recs[k] = v
	}
	var pax strings.Builder
	for _, k := range slices.Sorted(stdmaps.Keys(recs)) {
		pax.WriteString(paxRecord(k, recs[k]))
	}
	base := path.Base(h.Name)
	short := func(prefix string) string {
		n := prefix + base
		if len(n) > 100 {
			n = n[:100]
		}
		return n
	}
	xblk, err := headerBlock(&tar.Header{Typeflag: tar.TypeReg, Name: short("PaxHeaders.0/"), Size: int64(pax.Len()), Mode: 0o644, ModTime: h.ModTime})
	if err != nil {
		return err
	}
	retype(xblk, tar.TypeXHeader)
	fblk, err := headerBlock(&tar.Header{Typeflag: tar.TypeReg, Name: short("GNUSparseFile.0/"), Size: int64(len(smap)) + data,
		Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, ModTime: h.ModTime})
	if err != nil {
		return fmt.Errorf("layer /%s: %w", h.Name, err)
	}
	for _, b := range [][]byte{xblk, []byte(pax.String()), padding(int64(pax.Len())), fblk, []byte(smap)} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	for _, e := range ext {
		n, err := io.CopyBuffer(w, noWriteTo{io.NewSectionReader(f, e.off, e.n)}, buf)
		if err != nil {
			return fmt.Errorf("layer /%s: %w", h.Name, err)
		}
		if n != e.n {
			return fmt.Errorf("layer /%s: %w (file shrank while being read)", h.Name, io.ErrUnexpectedEOF)
		}
	}
	_, err = w.Write(padding(data))
	return err
}
