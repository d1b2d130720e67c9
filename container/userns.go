package container

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// IDMap is one line of a user namespace's uid_map or gid_map: Size ids from
// ContainerID inside are HostID... on the host.
type IDMap struct {
	ContainerID uint32
	HostID      uint32
	Size        uint32
}

// Userns runs a container in a user namespace of its own: its root is an
// unprivileged host id, and its layers are idmapped mounts, so the files
// it writes keep their in-container ids on disk (a commit records those,
// with nothing chowned).
type Userns struct {
	// Auto asks Create for AutoSize ids at a host range no other container
	// of the store has (podman's --userns=auto); Create fills the maps.
	Auto   bool    `json:",omitempty"`
	UIDMap []IDMap `json:",omitempty"`
	GIDMap []IDMap `json:",omitempty"`
}

// AutoSize is how many ids an automatic user namespace maps: 0..65535,
// every id a distribution's files use.
const AutoSize = 1 << 16

// Where automatic ranges come from: the "root" lines of /etc/subuid and
// /etc/subgid (what LXC uses for root's unprivileged containers), else
// systemd's range for container ids (524288…1879048191, see systemd's
// UIDS-GIDS.md), which no account and no useradd-made subordinate range
// takes.
const (
	subuidFile = "/etc/subuid"
	subgidFile = "/etc/subgid"
	subidOwner = "root"
)

var defaultPool = []IDMap{{HostID: 0x80000, Size: 0x6fffffff - 0x80000 + 1}}

// ErrNoIDs is returned (wrapped) when every automatic range is taken.
var ErrNoIDs = errors.New("no free range of host ids left")

// ErrHostRoot is returned (wrapped) for maps that would make a host id 0
// an id of the container, or leave the container's root unmapped.
var ErrHostRoot = errors.New("the container's root must be mapped to an unprivileged host id")

// ParseIDMap reads podman's --uidmap form, CONTAINER_ID:HOST_ID:SIZE.
func ParseIDMap(s string) (IDMap, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return IDMap{}, fmt.Errorf("id map %q: want CONTAINER_ID:HOST_ID:SIZE", s)
	}
	var n [3]uint32
	for i, v := range f {
		u, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return IDMap{}, fmt.Errorf("id map %q: %q is not an id", s, v)
		}
		n[i] = uint32(u)
	}
	m := IDMap{ContainerID: n[0], HostID: n[1], Size: n[2]}
	if m.Size == 0 || uint64(m.ContainerID)+uint64(m.Size) > 1<<32-1 || uint64(m.HostID)+uint64(m.Size) > 1<<32-1 {
		return IDMap{}, fmt.Errorf("id map %q: the range is empty or past the last id", s)
	}
	return m, nil
}

// check refuses a map that leaves the container's root unmapped, maps host
// root in, or maps an id twice; the kernel refuses overlaps too, later and
// with EINVAL.
func checkMap(what string, ms []IDMap) error {
	root := false
	for i, m := range ms {
		if m.HostID == 0 {
			return fmt.Errorf("%s %d:%d:%d: %w", what, m.ContainerID, m.HostID, m.Size, ErrHostRoot)
		}
		if m.ContainerID == 0 {
			root = true
		}
		for _, o := range ms[:i] {
			if overlaps(m.ContainerID, m.Size, o.ContainerID, o.Size) || overlaps(m.HostID, m.Size, o.HostID, o.Size) {
				return fmt.Errorf("%s: %d:%d:%d and %d:%d:%d overlap", what, o.ContainerID, o.HostID, o.Size, m.ContainerID, m.HostID, m.Size)
			}
		}
	}
	if !root {
		return fmt.Errorf("%s maps no container id 0: %w", what, ErrHostRoot)
	}
	return nil
}

func overlaps(a, an, b, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

// hostID is the host id container id c maps to.
func hostID(ms []IDMap, c uint32) (uint32, bool) {
	for _, m := range ms {
		if c >= m.ContainerID && uint64(c) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (c - m.ContainerID), true
		}
	}
	return 0, false
}

// readSubids reads owner's ranges in an /etc/subuid-style file; a missing
// file has none.
func readSubids(path, owner string) ([]IDMap, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []IDMap
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != owner {
			continue
		}
		m, err := ParseIDMap("0:" + rest)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, line, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// allocate finds the first size-aligned block of size ids in pool (ranges
// of host ids; ContainerID unused) that overlaps none of used.
func allocate(pool, used []IDMap, size uint32) (uint32, error) {
	for _, p := range pool {
		end := uint64(p.HostID) + uint64(p.Size)
		for start := uint64(p.HostID); start+uint64(size) <= end; {
			clash := -1
			for i, u := range used {
				if overlaps(uint32(start), size, u.HostID, u.Size) {
					clash = i
					break
				}
			}
			if clash < 0 {
				return uint32(start), nil
			}
			// Past the clash, to the next block boundary of the pool.
			next := uint64(used[clash].HostID) + uint64(used[clash].Size)
			off := (next - uint64(p.HostID) + uint64(size) - 1) / uint64(size) * uint64(size)
			start = uint64(p.HostID) + off
		}
	}
	return 0, fmt.Errorf("%w in the pool of %d ids", ErrNoIDs, poolSize(pool))
}

func poolSize(pool []IDMap) uint64 {
	var n uint64
	for _, p := range pool {
		n += uint64(p.Size)
	}
	return n
}

// createUserns settles the user namespace u asks for of the container meta
// being made in dir: an automatic one gets the first free range, so the
// containers of a store never share host ids (one container's root can
// touch nothing of another's, and with idmapped layers a range costs no
// disk). Create calls it under the containers lock, where no other
// container can be taking a range.
func (m *Manager) createUserns(meta *Meta, u *Userns, dir string) error {
	if u == nil {
		return nil
	}
	u = &Userns{Auto: u.Auto, UIDMap: slices.Clone(u.UIDMap), GIDMap: slices.Clone(u.GIDMap)}
	if u.Auto {
		others, err := m.List()
		if err != nil {
			return err
		}
		var usedU, usedG []IDMap
		for _, o := range others {
			if ou := o.Security.Userns; ou != nil {
				usedU = append(usedU, ou.UIDMap...)
				usedG = append(usedG, ou.GIDMap...)
			}
		}
		for _, x := range []struct {
			file string
			used []IDMap
			to   *[]IDMap
		}{{subuidFile, usedU, &u.UIDMap}, {subgidFile, usedG, &u.GIDMap}} {
			pool, err := readSubids(x.file, subidOwner)
			if err != nil {
				return fmt.Errorf("userns: %w", err)
			}
			if len(pool) == 0 {
				pool = defaultPool
			}
			h, err := allocate(pool, x.used, AutoSize)
			if err != nil {
				return fmt.Errorf("userns: %s: %w", x.file, err)
			}
			*x.to = []IDMap{{ContainerID: 0, HostID: h, Size: AutoSize}}
		}
	}
	if len(u.GIDMap) == 0 {
		u.GIDMap = slices.Clone(u.UIDMap) // podman's: no --gidmap maps gids as uids
	}
	if err := checkMap("uid map", u.UIDMap); err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	if err := checkMap("gid map", u.GIDMap); err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	meta.Security.Userns = u
	if err := m.reachable(meta, dir); err != nil {
		return err
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "meta.json"), b, 0o600)
}

// reachable lets the container's root, an unprivileged host id, reach its
// rootfs, which runc mounts from inside the user namespace: the mount point
// is ROOT/mnt/ID/rootfs (see mountDir), every directory above ROOT/mnt must
// be searchable by others, ROOT/mnt is made 0711 (as docker makes its root
// with --userns-remap: nobody can list it), and ROOT/mnt/ID is searchable
// by the container's root group alone (0710, docker's answer to
// CVE-2021-41091: no other host user can walk into the rootfs). The
// container's own directory (dir, to be renamed to its ID), with the upper,
// stays 0700: nothing there is the container's root's to reach.
func (m *Manager) reachable(meta *Meta, dir string) error {
	u := meta.Security.Userns
	hostRoot, _ := hostID(u.UIDMap, 0)
	hostGroup, ok := hostID(u.GIDMap, 0)
	if !ok {
		return fmt.Errorf("userns: gid map maps no container gid 0: %w", ErrHostRoot)
	}
	mnt := filepath.Dir(m.mountDir(meta.ID))
	if err := os.MkdirAll(mnt, 0o711); err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	if err := os.Chmod(mnt, 0o711); err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	for d := filepath.Dir(mnt); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("userns: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("userns: %s (mode %04o) is not searchable by others, so the container's root (host uid %d) cannot reach its rootfs", d, fi.Mode().Perm(), hostRoot)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	own := m.mountDir(meta.ID)
	if err := os.Mkdir(own, 0o710); err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	if err := os.Chown(own, 0, int(hostGroup)); err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	if err := os.Chmod(own, 0o710); err != nil { // past the umask
		return fmt.Errorf("userns: %w", err)
	}
	if err := os.Mkdir(filepath.Join(own, "rootfs"), 0o755); err != nil {
		return fmt.Errorf("userns: %w", err)
	}
	return os.Remove(filepath.Join(dir, "rootfs"))
}

// applyUserns puts the container in its user namespace. runc does the
// rest a user namespace needs: the maps, devices bind-mounted from the host
// instead of made with mknod (which a user namespace may not), the exec
// fifo owned by the container's root.
func applyUserns(spec *specs.Spec, meta *Meta, rootfs string) error {
	u := meta.Security.Userns
	if u == nil {
		return nil
	}
	if len(u.UIDMap) == 0 || len(u.GIDMap) == 0 {
		return fmt.Errorf("userns: no id maps (the container was not made by Create)")
	}
	spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace })
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = specMaps(u.UIDMap), specMaps(u.GIDMap)
	ownNet := slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.NetworkNamespace && ns.Path == ""
	})
	if !ownNet {
		// sysfs mounts only where the user namespace owns the network
		// namespace; with the host's network, the host's /sys read-only,
		// as rootless runc does.
		for i, mnt := range spec.Mounts {
			if filepath.Clean(mnt.Destination) == "/sys" && mnt.Type == "sysfs" {
				spec.Mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
			}
		}
	}
	return nil
}

func specMaps(ms []IDMap) []specs.LinuxIDMapping {
	out := make([]specs.LinuxIDMapping, len(ms))
	for i, m := range ms {
		out[i] = specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size}
	}
	return out
}
