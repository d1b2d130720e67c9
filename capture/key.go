package capture

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ErrSourceType is returned (wrapped, with the path) for a copy source that
// is a FIFO, a device or a socket: reading one would hang or never end, and
// docker's COPY does not take them either.
var ErrSourceType = errors.New("not a regular file, directory or symlink")

// stepKeyVersion changes when what a key covers changes, so that old cache
// entries are never taken for new ones.
const stepKeyVersion = "snap-capture-step/1"

// canonical is a step as its key sees it: after substitution, one kind.
type canonical struct {
	Run     string   `json:"run,omitempty"`
	Copy    *copyKey `json:"copy,omitempty"`
	Env     []string `json:"env,omitempty"`
	Workdir string   `json:"workdir,omitempty"`
	User    string   `json:"user,omitempty"`
}

type copyKey struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Owner string `json:"owner,omitempty"`
	Mode  string `json:"mode,omitempty"`
}

// Key is the layer-cache key of the step: a digest over parent, the step
// (after substitution), the network, every variable (run steps have them
// all in their environment) and, for a copy step, sources, the digest
// HashSources gives of what it copies ("" for other steps).
//
// parent names what the step runs on and must change whenever that does:
// the base image's ID for the first step, then the previous step's key (or
// the image it made), so that an env, workdir or user step changes the keys
// of every step after it.
func (s Step) Key(parent, network string, vars map[string]string, sources digest.Digest) digest.Digest {
	c := canonical{Run: s.Run, Env: s.Env, Workdir: s.Workdir, User: s.User}
	if s.Copy != nil {
		c.Copy = &copyKey{Src: s.Copy.Src, Dst: s.Copy.Dst, Owner: s.Copy.Owner}
		if s.Copy.Mode != nil {
			c.Copy.Mode = fmt.Sprintf("%o", unixMode(*s.Copy.Mode))
		}
	} else {
		sources = ""
	}
	// JSON: every string quoted, map keys sorted; nothing is ambiguous.
	b, _ := json.Marshal(struct {
		Version string            `json:"v"`
		Parent  string            `json:"parent"`
		Network string            `json:"network"`
		Vars    map[string]string `json:"vars"`
		Step    canonical         `json:"step"`
		Sources digest.Digest     `json:"sources,omitempty"`
	}{stepKeyVersion, parent, network, vars, c, sources})
	return digest.FromBytes(b)
}

// StepKey is Steps[i].Key with the file's network and variables, hashing a
// copy step's sources.
func (f *File) StepKey(i int, parent string) (digest.Digest, error) {
	s := f.Steps[i]
	var src digest.Digest
	if s.Copy != nil {
		var err error
		if src, err = HashSources(f.Dir, s.Copy.Src); err != nil {
			return "", fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return s.Key(parent, f.Network, f.Vars, src), nil
}

// SourcesDigest is a digest over what every copy step reads: with Digest
// and the base's, what tells that a capture would make what it made last
// time.
func (f *File) SourcesDigest() (digest.Digest, error) {
	h := sha256.New()
	for i, s := range f.Steps {
		if s.Copy == nil {
			continue
		}
		d, err := HashSources(f.Dir, s.Copy.Src)
		if err != nil {
			return "", fmt.Errorf("step %d: %w", i+1, err)
		}
		fmt.Fprintf(h, "%d %s\n", i, d)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// HashSources is a digest of the copy source src (relative to contextDir)
// as CopyInto would copy it: each entry's name, type, permission bits,
// owner on the host, size, symlink target and content, in the order of a
// walk of the tree. Modification times are left out, as BuildKit leaves
// them out of its cache keys: a checkout or touch must not re-run a step.
// FIFOs, devices and sockets are refused (ErrSourceType).
func HashSources(contextDir, src string) (digest.Digest, error) {
	ctx, err := os.OpenRoot(contextDir)
	if err != nil {
		return "", fmt.Errorf("copy source %s: %w", src, err)
	}
	defer ctx.Close()
	entries, err := sourceEntries(ctx, src)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, e := range entries {
		uid, gid := owner(e.info)
		fmt.Fprintf(h, "%q %o %d:%d %d %q\n", e.rel, unixType(e.info.Mode())|unixMode(e.info.Mode()), uid, gid, size(e.info), e.link)
		if e.info.Mode().IsRegular() {
			if err := hashFile(ctx, e, h); err != nil {
				return "", err
			}
		}
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

func hashFile(ctx *os.Root, e srcEntry, w io.Writer) error {
	f, err := openSource(ctx, e)
	if err != nil {
		return err
	}
	defer f.Close()
	// Exactly the size recorded: a file that grew or shrank since is read
	// as what the header says, and a short read is an error.
	if _, err := io.CopyN(w, f, e.info.Size()); err != nil {
		return fmt.Errorf("copy source %s: %w", e.name, err)
	}
	return nil
}

// srcEntry is one entry of a copy source.
type srcEntry struct {
	name string      // the path in the context directory
	rel  string      // the path below the source ("." for the source itself)
	info fs.FileInfo // of the entry itself (the source's own symlink is followed)
	link string      // a symlink's target
}

// sourceEntries lists the source src of contextDir (ctx) depth-first, each
// directory's entries sorted by name. The source itself is taken as its
// symlinks lead, inside ctx only (os.Root refuses the rest); symlinks below
// it are entries, never followed.
func sourceEntries(ctx *os.Root, src string) ([]srcEntry, error) {
	if err := checkSource(src); err != nil {
		return nil, fmt.Errorf("copy source: %w", err)
	}
	name := path.Clean(filepath.ToSlash(src))
	fi, err := ctx.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("copy source %s: %w", src, err)
	}
	var out []srcEntry
	var walk func(name, rel string, fi fs.FileInfo) error
	walk = func(name, rel string, fi fs.FileInfo) error {
		e := srcEntry{name: name, rel: rel, info: fi}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.link, err = ctx.Readlink(name); err != nil {
				return fmt.Errorf("copy source %s: %w", name, err)
			}
		case fi.IsDir(), fi.Mode().IsRegular():
		default:
			return fmt.Errorf("copy source %s: %s: %w", name, typeName(fi.Mode()), ErrSourceType)
		}
		out = append(out, e)
		if !fi.IsDir() {
			return nil
		}
		d, err := ctx.Open(name)
		if err != nil {
			return fmt.Errorf("copy source %s: %w", name, err)
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return fmt.Errorf("copy source %s: %w", name, err)
		}
		slices.Sort(names)
		for _, n := range names {
			child := path.Join(name, n)
			cfi, err := ctx.Lstat(child)
			if err != nil {
				return fmt.Errorf("copy source %s: %w", child, err)
			}
			if err := walk(child, path.Join(rel, n), cfi); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(name, ".", fi); err != nil {
		return nil, err
	}
	return out, nil
}

// openSource opens a regular source file without blocking (a FIFO swapped
// in since the listing would hang the open) and checks it is still one.
func openSource(ctx *os.Root, e srcEntry) (*os.File, error) {
	f, err := ctx.OpenFile(e.name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("copy source %s: %w", e.name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("copy source %s: %w", e.name, err)
	}
	if !fi.Mode().IsRegular() || !os.SameFile(fi, e.info) {
		f.Close()
		return nil, fmt.Errorf("copy source %s: changed while it was read", e.name)
	}
	return f, nil
}

func owner(fi fs.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}

func size(fi fs.FileInfo) int64 {
	if fi.Mode().IsRegular() {
		return fi.Size()
	}
	return 0
}

// unixMode is m's permission, setuid, setgid and sticky bits as chmod(2)
// takes them.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= unix.S_ISVTX
	}
	return u
}

func unixType(m fs.FileMode) uint32 {
	switch {
	case m.IsDir():
		return unix.S_IFDIR
	case m&fs.ModeSymlink != 0:
		return unix.S_IFLNK
	}
	return unix.S_IFREG
}

// typeName names a file type for messages.
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	}
	return "an irregular file"
}
