// Package conformance compares snap's layers with docker's, entry by entry
// and as the filesystems they produce.
package conformance

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"snap/diff"
)

// Entry is what a test compares of one tar entry or one file.
type Entry struct {
	Name     string
	Type     byte
	Mode     int64 // permission, setuid, setgid and sticky bits
	Uid, Gid int
	Size     int64
	SHA256   string
	Link     string
	Major    int64
	Minor    int64
	MTime    int64
	Xattrs   map[string]string
	// Nlink is set for files in a tree: hardlinks must survive the layer.
	Nlink uint64
}

func (e Entry) String() string {
	x := ""
	for _, k := range slices.Sorted(maps.Keys(e.Xattrs)) {
		x += fmt.Sprintf(" %s=%q", k, e.Xattrs[k])
	}
	return fmt.Sprintf("%s type=%c mode=%04o ids=%d:%d size=%d sha=%.12s link=%q dev=%d,%d mtime=%d nlink=%d%s",
		e.Name, e.Type, e.Mode, e.Uid, e.Gid, e.Size, e.SHA256, e.Link, e.Major, e.Minor, e.MTime, e.Nlink, x)
}

// ReadLayer lists a layer tar's entries in order.
func ReadLayer(r io.Reader) ([]Entry, error) {
	tr := tar.NewReader(r)
	var out []Entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			return nil, err
		}
		e := Entry{
			Name: h.Name, Type: h.Typeflag, Mode: h.Mode & 0o7777, Uid: h.Uid, Gid: h.Gid, Size: h.Size,
			Link: h.Linkname, Major: h.Devmajor, Minor: h.Devminor, MTime: h.ModTime.Unix(),
		}
		if h.Typeflag == tar.TypeReg {
			e.SHA256 = hex.EncodeToString(sum.Sum(nil))
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		out = append(out, e)
	}
}

// ReadTree lists a directory tree, sorted by path, as Entries.
func ReadTree(root string) ([]Entry, error) {
	var out []Entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		e := Entry{Name: rel, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid), MTime: info.ModTime().Unix()}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			e.Type = tar.TypeDir
		case syscall.S_IFREG:
			e.Type, e.Size, e.Nlink = tar.TypeReg, st.Size, uint64(st.Nlink)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			e.SHA256 = hex.EncodeToString(s[:])
		case syscall.S_IFLNK:
			e.Type = tar.TypeSymlink
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case syscall.S_IFCHR, syscall.S_IFBLK:
			e.Type = tar.TypeChar
			if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
				e.Type = tar.TypeBlock
			}
			e.Major, e.Minor = int64(st.Rdev>>8&0xfff), int64(st.Rdev&0xff|(st.Rdev>>12)&0xfff00)
		case syscall.S_IFIFO:
			e.Type = tar.TypeFifo
		}
		if e.Xattrs, err = diff.Xattrs(p); err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// DockerXattrs is what docker 20.10 keeps of a file's xattrs: its tar
// appender records security.capability alone. snap keeps all of them.
func DockerXattrs(x map[string]string) map[string]string {
	if v, ok := x["security.capability"]; ok {
		return map[string]string{"security.capability": v}
	}
	return nil
}

// Compare reports the first differences between docker's entries and
// snap's. snap's xattrs are cut to what docker keeps before comparing;
// the caller checks the rest on its own.
func Compare(docker, snap []Entry, ignore func(d, s *Entry)) []string {
	var diffs []string
	n := max(len(docker), len(snap))
	for i := 0; i < n && len(diffs) < 10; i++ {
		var d, s Entry
		if i < len(docker) {
			d = docker[i]
		}
		if i < len(snap) {
			s = snap[i]
		}
		s.Xattrs = DockerXattrs(s.Xattrs)
		d.Xattrs = DockerXattrs(d.Xattrs)
		if ignore != nil {
			ignore(&d, &s)
		}
		if d.String() != s.String() {
			diffs = append(diffs, fmt.Sprintf("entry %d:\n  docker %v\n  snap   %v", i, d, s))
		}
	}
	return diffs
}
