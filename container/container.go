// Package container is snap's own daemonless runtime on libcontainer: each
// container's rootfs is an overlay of its image's cached layers under a thin
// init layer (what the runtime itself creates: /etc/hosts, mount points) and
// its own upper dir, so a commit holds only what the process changed.
package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"snap/store"
)

// Meta is what snap keeps about a container.
type Meta struct {
	ID       string
	Name     string
	Image    string // image ID
	ImageRef string // as the user named it
	Args     []string
	Env      []string
	Cwd      string
	User     string
	Hostname string
	Volumes  []string // HOST:CTR[:ro], or CTR (an anonymous volume)
	// AnonVolumes are the anonymous volumes Create made (see makeVolumes).
	AnonVolumes []AnonVolume `json:",omitempty"`
	// Network is the network mode: "" or "none" (a namespace with only
	// lo), or "host".
	Network string `json:",omitempty"`
	// TTY and Interactive are docker run's -t and -i.
	TTY         bool `json:",omitempty"`
	Interactive bool `json:",omitempty"`
	// Detached: made by a detached run (docker run -d), which attaches
	// nothing to the process' stdio; docker's config says so.
	Detached bool     `json:",omitempty"`
	Security Security `json:",omitzero"`
	Created  time.Time
	Remove   bool // --rm
	// Entrypoint, when not nil, is the container's own entrypoint (the
	// run's --entrypoint), the first items of Args; nil: the image's.
	Entrypoint *[]string `json:",omitempty"`
	// Started is when the process last started.
	Started time.Time `json:",omitzero"`
	// ExitCode and Finished are known for containers snap waited for.
	ExitCode *int      `json:",omitempty"`
	Finished time.Time `json:",omitzero"`
}

func (m *Manager) save(meta *Meta) error {
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	tmp := m.path(meta.ID, "meta.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, m.path(meta.ID, "meta.json"))
}

// Manager keeps the containers of one store.
type Manager struct {
	st    *store.Store
	dir   string // ROOT/containers
	State string // libcontainer's state root
}

func New(st *store.Store) *Manager {
	return &Manager{st: st, dir: filepath.Join(st.Root(), "containers"), State: filepath.Join(st.Root(), "run")}
}

func (m *Manager) path(id string, parts ...string) string {
	return filepath.Join(append([]string{m.dir, id}, parts...)...)
}

// Upper, Init and Work are the container's overlay dirs.
func (m *Manager) Upper(id string) string { return m.path(id, "upper") }
func (m *Manager) Init(id string) string  { return m.path(id, "init") }
func (m *Manager) Work(id string) string  { return m.path(id, "work") }

// Rootfs is where the container's overlay is mounted: in its own
// directory, or, for a container with a user namespace, under ROOT/mnt
// (see mountDir), where its root can reach it without reaching its upper.
func (m *Manager) Rootfs(id string) string {
	if p := filepath.Join(m.mountDir(id), "rootfs"); exists(p) {
		return p
	}
	return m.path(id, "rootfs")
}

// mountDir holds the rootfs mount point of a container with a user
// namespace. runc mounts that rootfs from inside the namespace, so the
// container's root (an unprivileged host id) must be able to walk to it;
// its own directory, which holds the upper, must stay closed to that id:
// the upper keeps in-container ids on disk, and a setuid file the
// container made there is setuid root on the host.
func (m *Manager) mountDir(id string) string { return filepath.Join(m.st.Root(), "mnt", id) }

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// List returns every container, oldest first.
func (m *Manager) List() ([]*Meta, error) {
	ents, err := os.ReadDir(m.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Meta
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue // a container being made (.tmp-*)
		}
		b, err := os.ReadFile(m.path(e.Name(), "meta.json"))
		if err != nil {
			continue // being created or removed
		}
		var meta Meta
		if err := json.Unmarshal(b, &meta); err != nil {
			return nil, fmt.Errorf("container %s: %w", e.Name(), err)
		}
		out = append(out, &meta)
	}
	slices.SortFunc(out, func(a, b *Meta) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Get finds a container by name or ID prefix.
func (m *Manager) Get(name string) (*Meta, error) {
	all, err := m.List()
	if err != nil {
		return nil, err
	}
	var found []*Meta
	for _, c := range all {
		if c.Name == name || c.ID == name {
			return c, nil
		}
		if len(name) >= 3 && strings.HasPrefix(c.ID, name) {
			found = append(found, c)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	if len(found) > 1 {
		return nil, fmt.Errorf("container %s: ambiguous ID prefix", name)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
}

// ErrInvalidName is returned (wrapped) for a container name docker would
// refuse.
var ErrInvalidName = errors.New("only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, two characters at least")

// validName is moby's restrictedNamePattern.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidName checks a container name as docker does and returns it without
// the leading "/" docker also accepts.
func ValidName(name string) (string, error) {
	n := strings.TrimPrefix(name, "/")
	if !validName.MatchString(n) {
		return "", fmt.Errorf("container name %q: %w", name, ErrInvalidName)
	}
	return n, nil
}

// ErrNotFound is the error for a name no container has.
var ErrNotFound = errors.New("no such container")

// CreateOptions are docker run's flags that snap takes.
type CreateOptions struct {
	Image    string
	Name     string   // empty: snap_ and the ID's first 8 characters
	Args     []string // empty: the image's entrypoint and cmd
	Env      []string
	Cwd      string
	User     string
	Hostname string
	Volumes  []string
	Remove   bool
	// Entrypoint, when not nil, replaces the image's ("" clears it), as
	// docker run --entrypoint.
	Entrypoint  *string
	Network     string
	TTY         bool
	Interactive bool
	Detached    bool
	Security    Security
}

// Create prepares a container: the image's layers unpacked (once, shared),
// the init layer, the upper and work dirs.
func (m *Manager) Create(o CreateOptions) (*Meta, error) {
	if o.Name != "" {
		n, err := ValidName(o.Name)
		if err != nil {
			return nil, err
		}
		o.Name = n
	}
	img, err := m.st.Lookup(o.Image)
	if err != nil {
		return nil, err
	}
	layers, err := m.st.LayerDirs(img)
	if err != nil {
		return nil, err
	}
	idb := make([]byte, 32)
	rand.Read(idb)
	id := hex.EncodeToString(idb)
	meta := &Meta{ID: id, Name: o.Name, Image: img.ID.String(), ImageRef: o.Image, Created: time.Now().UTC(),
		Cwd: o.Cwd, User: o.User, Hostname: o.Hostname, Volumes: o.Volumes, Remove: o.Remove, Network: o.Network}
	if meta.Security, err = o.Security.checked(); err != nil {
		return nil, err
	}
	if meta.Name == "" {
		meta.Name = "snap_" + id[:8]
	}
	if meta.Hostname == "" {
		meta.Hostname = defaultHostname(meta.Network, id)
	}
	cfg := img.Config.Config
	meta.TTY, meta.Interactive, meta.Detached = o.TTY, o.Interactive, o.Detached
	meta.Args = o.Args
	switch {
	case o.Entrypoint != nil:
		// docker: the image's CMD goes with its entrypoint, even when
		// the new entrypoint is none.
		ep := []string{}
		if *o.Entrypoint != "" {
			ep = []string{*o.Entrypoint}
		}
		meta.Entrypoint, meta.Args = &ep, append(slices.Clone(ep), o.Args...)
	case len(meta.Args) == 0:
		meta.Args = append(slices.Clone(cfg.Entrypoint), cfg.Cmd...)
	case len(cfg.Entrypoint) > 0:
		meta.Args = append(slices.Clone(cfg.Entrypoint), o.Args...)
	}
	if len(meta.Args) == 0 {
		return nil, fmt.Errorf("image %s: no command given and the image has none", o.Image)
	}
	meta.Env = containerEnv(cfg.Env, o.Env)
	if meta.Cwd == "" {
		meta.Cwd = cfg.WorkingDir
	}
	if meta.Cwd == "" {
		meta.Cwd = "/"
	}
	if meta.User == "" {
		meta.User = cfg.User
	}
	tmp, err := os.MkdirTemp(filepath.Dir(m.path(id)), ".tmp-")
	if err != nil {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return nil, err
		}
		if tmp, err = os.MkdirTemp(m.dir, ".tmp-"); err != nil {
			return nil, err
		}
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"upper", "work", "rootfs", "init"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeInit(filepath.Join(tmp, "init"), layers, meta, cfg.Volumes); err != nil {
		return nil, err
	}
	if meta.AnonVolumes, err = makeVolumes(tmp, m.path(id), layers, meta, cfg.Volumes); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), b, 0o600); err != nil {
		return nil, err
	}
	// The container appears under the manager's lock, with its image and
	// name checked again there: an rmi (which checks for containers under
	// the same lock) cannot slip between the check and the container, so
	// a prune never takes an image a container was just made from.
	unlock, err := m.lockContainers()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := m.st.Lookup(img.ID.String()); err != nil {
		return nil, fmt.Errorf("image %s: removed while the container was made: %w", o.Image, err)
	}
	if o.Name != "" {
		if _, err := m.Get(o.Name); err == nil {
			return nil, fmt.Errorf("container name %q is already in use", o.Name)
		}
	}
	err = m.createUserns(meta, o.Security.Userns, tmp)
	if err == nil {
		err = os.Rename(tmp, m.path(id))
	}
	if err != nil {
		os.RemoveAll(m.mountDir(id)) // made for a user namespace
		return nil, err
	}
	return meta, nil
}

// lockContainers serializes what makes a container with what removes an
// image (see Create, RemoveImage). It is taken before the store's own locks.
func (m *Manager) lockContainers() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(m.st.Root(), "containers.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("containers lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// Mount mounts the container's overlay rootfs if it is not mounted. An
// image deeper than overlayfs stacks runs on a flattened lower (see
// mountLowers); Lowers, what commits compare with, stays the image's layers.
func (m *Manager) Mount(meta *Meta) (string, error) {
	rootfs := m.Rootfs(meta.ID)
	if mounted(rootfs) {
		return rootfs, nil
	}
	// One lease from the first layer looked at to the mount: no prune
	// takes a layer or a flattened lower before the mount holds it.
	lease, err := m.st.Lease(context.Background())
	if err != nil {
		return "", err
	}
	defer lease.Release()
	img, err := m.st.Lookup(meta.Image)
	if err != nil {
		return "", fmt.Errorf("container %s: its image: %w", meta.Name, err)
	}
	layers, err := m.st.LayerDirs(img)
	if err != nil {
		return "", err
	}
	lowers, err := m.mountLowers([]string{m.Init(meta.ID)}, img, layers, maxStack, flattenStep)
	if err != nil {
		return "", fmt.Errorf("container %s: %w", meta.Name, err)
	}
	if err := mountUserns(meta, rootfs, lowers, m.Upper(meta.ID), m.Work(meta.ID)); err != nil {
		return "", fmt.Errorf("container %s: mount overlay: %w", meta.Name, err)
	}
	return rootfs, nil
}

// Lowers are the container's lowers, top-most first: init, then the image.
func (m *Manager) Lowers(meta *Meta) ([]string, *store.Image, error) {
	img, err := m.st.Lookup(meta.Image)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: its image %s: %w", meta.Name, meta.ImageRef, err)
	}
	layers, err := m.st.LayerDirs(img)
	if err != nil {
		return nil, nil, err
	}
	return append([]string{m.Init(meta.ID)}, layers...), img, nil
}

// unmount leaves no mount on the container's rootfs.
func (m *Manager) unmount(meta *Meta) error {
	rootfs := m.Rootfs(meta.ID)
	for i := 0; mounted(rootfs); i++ {
		if i == 8 { // stacked mounts are one or two, never this many
			return fmt.Errorf("container %s: %s stays mounted", meta.Name, rootfs)
		}
		err := unix.Unmount(rootfs, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(rootfs, unix.MNT_DETACH) // a process outside still holds it (a shell's cwd)
		}
		if err != nil {
			return fmt.Errorf("container %s: unmount %s: %w", meta.Name, rootfs, err)
		}
	}
	return nil
}

// openLock opens the container's lock file. Whoever owns a run of the
// container (a monitor, a foreground run) holds the lock until the run is
// cleaned up; the others wait on it before they clean up after a run.
func (m *Manager) openLock(id string) (*os.File, error) {
	return os.OpenFile(m.path(id, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
}

// lockWithin takes f's lock, waiting up to d for its holder.
func lockWithin(f *os.File, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mounted(p string) bool {
	var a, b unix.Stat_t
	if unix.Stat(p, &a) != nil || unix.Stat(filepath.Dir(p), &b) != nil {
		return false
	}
	return a.Dev != b.Dev // an overlay has a device of its own
}

// Log is where a detached container's output goes.
func (m *Manager) Log(meta *Meta) string { return m.path(meta.ID, "log") }
