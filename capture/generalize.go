package capture

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Generalize removes from a captured root filesystem (mounted on the host)
// what makes it one machine rather than an image, virt-sysprep's set; each
// item is an operation of its own (GeneralizeOnly runs some), named as
// virt-sysprep names it:
//
//   - machine-id: /etc/machine-id emptied (kept, empty, if it is there, so
//     systemd makes a new one at first boot); /var/lib/dbus/machine-id the
//     same when it is a regular file (it is often a symlink to the first).
//   - ssh-hostkeys: /etc/ssh/ssh_host_* removed (each instance makes its
//     own).
//   - tmp-files: everything in /tmp and /var/tmp removed, the directories
//     kept.
//   - package-manager-cache: /var/cache/apt/archives/*.deb,
//     /var/cache/apt/*.bin, /var/lib/apt/lists/* but lock and partial/,
//     and everything in /var/cache/dnf, /var/cache/yum and /var/cache/apk.
//   - logfiles: every regular file under /var/log truncated to 0 bytes;
//     directories and other files kept.
//   - bash-history: shell histories of /root and /home/*: .bash_history,
//     .ash_history, .sh_history, .zsh_history, .python_history, .lesshst,
//     .viminfo.
//
// The root is the image's, and may be hostile: Generalize never follows a
// symlink, neither on the way (a /var/log or /tmp that is a symlink to /etc
// is left as it is, and reported) nor at the end (a /etc/machine-id
// symlink to /etc/shadow is not emptied: only regular files are); it never
// opens a FIFO or a device; and a file to empty that has other hardlinks
// (an /var/log file linked to /etc/passwd) is replaced by a new empty file
// with its owner, mode, xattrs and times, so the other names keep their
// content. Emptied files keep their times, so that generalizing the same
// tree twice gives the same layer.
//
// Rules lists the same set as patterns, for the layer filter.
func Generalize(root string) (Report, error) {
	return GeneralizeOnly(root, GeneralizeItems()...)
}

// Report says what Generalize did, paths as in the container.
type Report struct {
	Emptied []string // regular files truncated to 0 bytes
	Removed []string // files and trees removed
	Skipped []Skip   // left as they were, and why
}

// Skip is a path Generalize left alone.
type Skip struct {
	Path   string
	Reason string
}

func (s Skip) String() string { return s.Path + ": " + s.Reason }

// ErrUnknownItem is returned (wrapped) by GeneralizeOnly for an item that
// is not one of GeneralizeItems.
var ErrUnknownItem = errors.New("unknown generalize item")

// items are Generalize's operations, in the order they run.
var items = []struct {
	name string
	run  func(*sysprep) error
}{
	{"machine-id", (*sysprep).machineID},
	{"ssh-hostkeys", (*sysprep).sshHostKeys},
	{"tmp-files", (*sysprep).tmpFiles},
	{"package-manager-cache", (*sysprep).packageCaches},
	{"logfiles", (*sysprep).logFiles},
	{"bash-history", (*sysprep).histories},
}

// GeneralizeItems names Generalize's operations.
func GeneralizeItems() []string {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.name
	}
	return names
}

// GeneralizeOnly runs the named operations of Generalize on root.
func GeneralizeOnly(root string, names ...string) (Report, error) {
	for _, n := range names {
		if !slices.Contains(GeneralizeItems(), n) {
			return Report{}, fmt.Errorf("generalize %s: %q: %w", root, n, ErrUnknownItem)
		}
	}
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Report{}, fmt.Errorf("generalize %s: %w", root, err)
	}
	defer unix.Close(fd)
	s := &sysprep{root: fd}
	for _, it := range items {
		if !slices.Contains(names, it.name) {
			continue
		}
		if err := it.run(s); err != nil {
			return s.report, fmt.Errorf("generalize %s: %s: %w", root, it.name, err)
		}
	}
	return s.report, nil
}

// Rule is one path pattern of Generalize's set, for a layer filter that
// keeps the same paths out of every layer a capture makes. Patterns are
// absolute and matched component by component with path.Match, where a
// "**" component matches any number of components, and at the end one or
// more (so /tmp/** is what is in /tmp, not /tmp itself). A rule covers the
// paths it matches and everything beneath them; when several rules match
// a path, or one of its parents, the last one in the list decides.
type Rule struct {
	// Item is the Generalize operation the rule comes from.
	Item    string
	Pattern string
	// Truncate keeps a regular file matched, empty; a directory or another
	// kind of file is kept as it is. Without it, what is matched is left
	// out.
	Truncate bool
	// Keep is an exception: what it matches is left as it is, whatever an
	// earlier rule says.
	Keep bool
}

// Rules is Generalize's set as patterns (see Rule).
func Rules() []Rule {
	var l []Rule
	add := func(item string, truncate bool, patterns ...string) {
		for _, p := range patterns {
			l = append(l, Rule{Item: item, Pattern: p, Truncate: truncate})
		}
	}
	add("machine-id", true, "/etc/machine-id", "/var/lib/dbus/machine-id")
	add("ssh-hostkeys", false, "/etc/ssh/ssh_host_*")
	add("tmp-files", false, "/tmp/**", "/var/tmp/**")
	add("package-manager-cache", false, "/var/cache/apt/archives/*.deb", "/var/cache/apt/*.bin", "/var/lib/apt/lists/**")
	for _, p := range []string{"/var/lib/apt/lists/lock", "/var/lib/apt/lists/partial"} {
		l = append(l, Rule{Item: "package-manager-cache", Pattern: p, Keep: true})
	}
	add("package-manager-cache", false, "/var/cache/dnf/**", "/var/cache/yum/**", "/var/cache/apk/**")
	add("logfiles", true, "/var/log/**")
	for _, home := range []string{"/root", "/home/*"} {
		for _, h := range histories {
			add("bash-history", false, home+"/"+h)
		}
	}
	return l
}

// MatchRules returns the rule that decides for the absolute path p (see
// Rule); ok is false when none covers it or an exception keeps it.
func MatchRules(rules []Rule, p string) (r Rule, ok bool) {
	found := false
	for _, rule := range rules {
		for q := path.Clean(p); ; q = path.Dir(q) {
			if MatchGlob(rule.Pattern, q) {
				r, found = rule, true
				break
			}
			if q == "/" {
				break
			}
		}
	}
	return r, found && !r.Keep
}

// MatchGlob matches an absolute path against a pattern of Rule's syntax.
func MatchGlob(pattern, name string) bool {
	return matchParts(strings.Split(strings.Trim(pattern, "/"), "/"), strings.Split(strings.Trim(name, "/"), "/"))
}

func matchParts(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			if len(pat) == 1 {
				return len(name) > 0 && name[0] != ""
			}
			for i := 0; i <= len(name); i++ {
				if matchParts(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// histories are the shell (and other interactive tools') history files.
var histories = []string{".bash_history", ".ash_history", ".sh_history", ".zsh_history", ".python_history", ".lesshst", ".viminfo"}

// sysprep works on the root through descriptors: every directory is opened
// from its parent's descriptor with O_NOFOLLOW, so no symlink in the image
// is ever followed, on the way or at the end.
type sysprep struct {
	root   int
	report Report
}

func (s *sysprep) skip(p, why string) {
	s.report.Skipped = append(s.report.Skipped, Skip{Path: p, Reason: why})
}

// openDir opens the directory p (absolute, in the container), component by
// component. A missing one is nil, silently; one that is a symlink or not
// a directory is nil and reported.
func (s *sysprep) openDir(p string) (*dir, error) {
	fd, err := unix.Dup(s.root)
	if err != nil {
		return nil, err
	}
	cur := "/"
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		if c == "" {
			continue
		}
		next := path.Join(cur, c)
		nfd, err := unix.Openat(fd, c, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			defer unix.Close(fd)
			return nil, s.notDir(fd, c, next, err)
		}
		unix.Close(fd)
		fd, cur = nfd, next
	}
	return &dir{fd: fd, path: cur}, nil
}

// notDir explains why a directory could not be opened: a missing one is
// nothing to do, a symlink or a file is reported.
func (s *sysprep) notDir(parent int, name, p string, err error) error {
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFLNK {
				s.skip(p, "a symlink, not followed")
			} else {
				s.skip(p, kindOf(st.Mode)+", not a directory")
			}
			return nil
		}
	}
	return fmt.Errorf("%s: %w", p, err)
}

func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFREG:
		return "a regular file"
	}
	return "an irregular file"
}

// dir is an open directory of the root.
type dir struct {
	fd   int
	path string
}

func (d *dir) close() {
	if d != nil {
		unix.Close(d.fd)
	}
}

// names lists the directory, sorted.
func (d *dir) names() ([]string, error) {
	fd, err := unix.Dup(d.fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path, err)
	}
	slices.Sort(names)
	return names, nil
}

// withDir runs fn on the directory p when it is there and a directory.
func (s *sysprep) withDir(p string, fn func(*dir) error) error {
	d, err := s.openDir(p)
	if err != nil || d == nil {
		return err
	}
	defer d.close()
	return fn(d)
}

// removeMatching removes the entries of d whose names keep says to.
func (s *sysprep) removeMatching(d *dir, keep func(name string) bool) error {
	names, err := d.names()
	if err != nil {
		return err
	}
	for _, n := range names {
		if keep(n) {
			continue
		}
		if err := removeAt(d.fd, d.path, n); err != nil {
			return err
		}
		s.report.Removed = append(s.report.Removed, path.Join(d.path, n))
	}
	return nil
}

// removeAt removes name in the directory parent (at p): a file, symlink or
// special file is unlinked (a symlink's target is not touched), a directory
// emptied first, through descriptors opened without following symlinks.
func removeAt(parent int, p, name string) error {
	full := path.Join(p, name)
	err := unix.Unlinkat(parent, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%s: %w", full, err)
	}
	fd, oerr := unix.Openat(parent, name, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if oerr != nil {
		return fmt.Errorf("%s: %w", full, err)
	}
	d := &dir{fd: fd, path: full}
	names, err := d.names()
	if err != nil {
		d.close()
		return err
	}
	for _, n := range names {
		if err := removeAt(fd, full, n); err != nil {
			d.close()
			return err
		}
	}
	d.close()
	if err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: %w", full, err)
	}
	return nil
}

// emptyAt empties the regular file name in d, reporting anything else
// (never opening it). A file with other hardlinks is replaced rather than
// truncated: the other names keep their content.
func (s *sysprep) emptyAt(d *dir, name string) error {
	full := path.Join(d.path, name)
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("%s: %w", full, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		s.skip(full, kindOf(st.Mode)+", not emptied")
		return nil
	}
	if st.Size == 0 {
		// Already empty: untouched, so an overlay does not copy it up.
		return nil
	}
	// Opened for writing but not truncated: nothing changes before the
	// check that it is still the file stat saw. O_NONBLOCK: a FIFO swapped
	// in meanwhile must not hang the open.
	fd, err := unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", full, err)
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return fmt.Errorf("%s: %w", full, err)
	}
	if fst.Dev != st.Dev || fst.Ino != st.Ino || fst.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: changed while it was emptied", full)
	}
	if fst.Nlink > 1 {
		err = replaceEmpty(d, name, fd, &fst)
	} else {
		err = unix.Ftruncate(fd, 0)
		if err == nil {
			err = unix.UtimesNanoAt(fd, "", []unix.Timespec{fst.Atim, fst.Mtim}, unix.AT_EMPTY_PATH)
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", full, err)
	}
	s.report.Emptied = append(s.report.Emptied, full)
	return nil
}

// replaceEmpty puts a new empty file with the metadata of the file fd (st)
// in place of name in d.
func replaceEmpty(d *dir, name string, fd int, st *unix.Stat_t) error {
	tmp := ".snap-generalize-" + name
	if len(tmp) > 255 {
		tmp = tmp[:255]
	}
	_ = unix.Unlinkat(d.fd, tmp, 0)
	nfd, err := unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		unix.Close(nfd)
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	if err := unix.Fchown(nfd, int(st.Uid), int(st.Gid)); err != nil {
		return fail(err)
	}
	// After the chown, which clears setuid and setgid.
	if err := unix.Fchmod(nfd, st.Mode&0o7777); err != nil {
		return fail(err)
	}
	if err := copyXattrs(fd, nfd); err != nil {
		return fail(err)
	}
	if err := unix.UtimesNanoAt(nfd, "", []unix.Timespec{st.Atim, st.Mtim}, unix.AT_EMPTY_PATH); err != nil {
		return fail(err)
	}
	if err := unix.Close(nfd); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	return nil
}

// copyXattrs copies every xattr of the file from to the file to.
func copyXattrs(from, to int) error {
	size, err := unix.Flistxattr(from, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	buf := make([]byte, size)
	if size, err = unix.Flistxattr(from, buf); err != nil {
		return err
	}
	for _, attr := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if attr == "" {
			continue
		}
		vsize, err := unix.Fgetxattr(from, attr, nil)
		if err != nil {
			return err
		}
		val := make([]byte, vsize)
		if vsize, err = unix.Fgetxattr(from, attr, val); err != nil {
			return err
		}
		if err := unix.Fsetxattr(to, attr, val[:vsize], 0); err != nil {
			return fmt.Errorf("xattr %s: %w", attr, err)
		}
	}
	return nil
}

func (s *sysprep) machineID() error {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if err := s.withDir(path.Dir(p), func(d *dir) error { return s.emptyAt(d, path.Base(p)) }); err != nil {
			return err
		}
	}
	return nil
}

func (s *sysprep) sshHostKeys() error {
	return s.withDir("/etc/ssh", func(d *dir) error {
		return s.removeMatching(d, func(n string) bool { return !strings.HasPrefix(n, "ssh_host_") })
	})
}

func (s *sysprep) tmpFiles() error {
	for _, p := range []string{"/tmp", "/var/tmp"} {
		if err := s.withDir(p, func(d *dir) error {
			return s.removeMatching(d, func(string) bool { return false })
		}); err != nil {
			return err
		}
	}
	return nil
}

func (s *sysprep) packageCaches() error {
	glob := func(pattern string) func(string) bool {
		return func(n string) bool { ok, _ := path.Match(pattern, n); return !ok }
	}
	for _, c := range []struct {
		dir  string
		keep func(string) bool
	}{
		{"/var/cache/apt/archives", glob("*.deb")},
		{"/var/cache/apt", glob("*.bin")},
		{"/var/lib/apt/lists", func(n string) bool { return n == "lock" || n == "partial" }},
		{"/var/cache/dnf", func(string) bool { return false }},
		{"/var/cache/yum", func(string) bool { return false }},
		{"/var/cache/apk", func(string) bool { return false }},
	} {
		if err := s.withDir(c.dir, func(d *dir) error { return s.removeMatching(d, c.keep) }); err != nil {
			return err
		}
	}
	return nil
}

func (s *sysprep) logFiles() error {
	return s.withDir("/var/log", s.emptyTree)
}

// emptyTree empties every regular file under d, depth-first, never
// following a symlink.
func (s *sysprep) emptyTree(d *dir) error {
	names, err := d.names()
	if err != nil {
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("%s: %w", path.Join(d.path, n), err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := s.emptyAt(d, n); err != nil {
				return err
			}
			continue
		}
		full := path.Join(d.path, n)
		fd, err := unix.Openat(d.fd, n, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if err := s.notDir(d.fd, n, full, err); err != nil {
				return err
			}
			continue
		}
		sub := &dir{fd: fd, path: full}
		err = s.emptyTree(sub)
		sub.close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *sysprep) histories() error {
	homes := []string{"/root"}
	if err := s.withDir("/home", func(d *dir) error {
		names, err := d.names()
		for _, n := range names {
			homes = append(homes, path.Join(d.path, n))
		}
		return err
	}); err != nil {
		return err
	}
	for _, h := range homes {
		if err := s.withDir(h, func(d *dir) error {
			for _, n := range histories {
				var st unix.Stat_t
				if unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
					continue
				}
				if err := removeAt(d.fd, d.path, n); err != nil {
					return err
				}
				s.report.Removed = append(s.report.Removed, path.Join(d.path, n))
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}
