package container

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// maxUserDB bounds what is read of the image's /etc/passwd and /etc/group
// (see readUserDB): ten thousand users take well under 1 MiB, and a
// container must not make snap read a sparse terabyte.
const maxUserDB = 1 << 20

// ErrUserDB is returned (wrapped) when the container's /etc/passwd or
// /etc/group is not something snap reads: not a regular file, or too big.
var ErrUserDB = errors.New("refused")

// execUser is who a container's process runs as.
type execUser struct {
	UID, GID int
	Groups   []int  // supplementary, the primary group first
	Home     string // for HOME when the env has none
}

// lookupUser resolves USER ("name", "uid", "name:group", "uid:gid") against
// the passwd and group files of the container's rootfs, as docker does with
// moby/sys/user: names through /etc/passwd and /etc/group, a user's
// supplementary groups from /etc/group, "uid:gid" numbers as they are.
// The files are found inside rootfs (their symlinks resolved there, never on
// the host) and must be regular files: a FIFO would block the read forever.
func lookupUser(rootfs, spec string) (*execUser, error) {
	// "uid:gid" needs no file, and neither does the default user (root,
	// whose home is all the file would give): one snap will not read is
	// taken as missing.
	numeric := spec == "" || numericUser(spec)
	passwd, err := readUserDB(rootfs, "/etc/passwd")
	if err != nil && !numeric {
		return nil, fmt.Errorf("user %q: %w", spec, err)
	}
	group, err := readUserDB(rootfs, "/etc/group")
	if err != nil && !numeric {
		return nil, fmt.Errorf("user %q: %w", spec, err)
	}
	eu, err := user.GetExecUser(spec, nil, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", spec, err)
	}
	// Docker's process is in its primary group too (containerd's
	// WithAdditionalGIDs puts it first): id shows groups=0(root).
	u := &execUser{UID: eu.Uid, GID: eu.Gid, Groups: []int{eu.Gid}, Home: eu.Home}
	if u.Home == "" {
		u.Home = "/" // runc's default
	}
	for _, g := range eu.Sgids {
		if !slices.Contains(u.Groups, g) {
			u.Groups = append(u.Groups, g)
		}
	}
	return u, nil
}

// withHome adds HOME to env when it has none. runc would look it up
// itself, inside the container, where a FIFO for /etc/passwd hangs the
// start: the home found here is the same one.
func (u *execUser) withHome(env []string) []string {
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOME=") && e != "HOME=" }) {
		return env
	}
	return append(env, "HOME="+u.Home)
}

// numericUser reports whether spec is "uid:gid", both numbers.
func numericUser(spec string) bool {
	u, g, ok := strings.Cut(spec, ":")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(u, 10, 31)
	_, err2 := strconv.ParseUint(g, 10, 31)
	return err1 == nil && err2 == nil
}

// readUserDB reads name inside rootfs. A missing file is nil, as
// moby/sys/user takes it (names are then unknown).
func readUserDB(rootfs, name string) (io.Reader, error) {
	h, err := pathrs.OpenInRoot(rootfs, name)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer h.Close()
	// The O_PATH handle is the file itself: checking it and then reopening
	// it leaves no window for a swap.
	var st unix.Stat_t
	if err := unix.Fstat(int(h.Fd()), &st); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file: %w", name, ErrUserDB)
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxUserDB+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxUserDB {
		// Only its first maxUserDB bytes, whole lines, are read: a user
		// named past them is unknown, and everyone else runs, as docker
		// runs an image with a huge passwd.
		b = b[:bytes.LastIndexByte(b[:maxUserDB], '\n')+1]
	}
	return bytes.NewReader(b), nil
}
