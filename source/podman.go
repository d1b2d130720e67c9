package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// Podman is a container of podman (podman://NAME), read through the
// Docker-compatible API of podman's service: the same calls as docker://,
// with podman's differences (see podmanOpened).
type Podman struct {
	Name  string
	Pause bool
	// Host is podman's service, as CONTAINER_HOST names it (unix:// only);
	// empty: the socket podman's own units listen on, else a service snap
	// starts for the commit (see podmanService).
	Host string
}

func (p Podman) String() string { return "podman://" + p.Name }

// ErrNoPodman is returned when no podman service answers and there is no
// podman to start one.
var ErrNoPodman = errors.New("no podman service")

// Open finds podman's service and opens the container as docker:// does.
func (p Podman) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	host, stop, err := podmanService(ctx, p.Host)
	if err != nil {
		return nil, err
	}
	o, err := Docker{Name: p.Name, Pause: p.Pause, Host: host}.Open(ctx, st)
	if err != nil {
		if stop != nil {
			stop()
		}
		return nil, err
	}
	if stop != nil {
		unpause := o.Close
		o.Close = func() error {
			// Unpause first: the service snap started is what unpauses.
			var err error
			if unpause != nil {
				err = unpause()
			}
			stop()
			return err
		}
	}
	return o, nil
}

// podmanSockets are where an already running podman service listens, as
// podman-remote looks for it: CONTAINER_HOST when set (then only there), else
// the socket of podman.socket, root's or the user's.
func podmanSockets(host string) []string {
	if host != "" {
		return []string{host}
	}
	if os.Geteuid() == 0 {
		return []string{"unix:///run/podman/podman.sock"}
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = fmt.Sprintf("/run/user/%d", os.Geteuid())
	}
	return []string{"unix://" + filepath.Join(dir, "podman/podman.sock")}
}

// answers reports whether a unix socket accepts a connection (a socket
// systemd activates accepts one and starts the service).
func answers(ctx context.Context, host string) bool {
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return false
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// podmanService gives the host of a podman service that answers, and a stop
// func when snap started that service itself.
//
// When no socket answers snap starts `podman system service --time=0` on a
// socket of its own for the length of the commit and stops it after, rather
// than failing with a hint: a podman user never has to run a service for
// podman's own commands (podman has no daemon), so "start a service first"
// would be a step docker users do not take either; the service reads the
// same storage podman does (containers.conf, storage.conf, CONTAINERS_CONF),
// costs well under a second, and dies with snap (Pdeathsig) if snap is
// killed. A CONTAINER_HOST the user named is used as it is, never replaced.
func podmanService(ctx context.Context, host string) (string, func(), error) {
	for _, h := range podmanSockets(host) {
		if !strings.HasPrefix(h, "unix://") {
			return "", nil, fmt.Errorf("podman service %s: only unix:// sockets are supported", h)
		}
		if answers(ctx, h) {
			return h, nil, nil
		}
	}
	if host != "" {
		return "", nil, fmt.Errorf("podman service at %s is not answering: %w", host, ErrNoPodman)
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		return "", nil, fmt.Errorf("%w at %s and no podman on PATH to start one", ErrNoPodman, podmanSockets("")[0])
	}
	dir, err := os.MkdirTemp("", "snap-podman-")
	if err != nil {
		return "", nil, err
	}
	sock := "unix://" + filepath.Join(dir, "podman.sock")
	cmd := exec.Command(bin, "system", "service", "--time=0", sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	// Its own process group: a Ctrl-C at the terminal reaches snap's group,
	// and the service must outlive it to unpause the container.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("start podman system service: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !answers(ctx, sock) {
		select {
		case err := <-exited:
			os.RemoveAll(dir)
			exited <- err
			return "", nil, fmt.Errorf("podman system service exited: %v: %s", err, strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-deadline:
			stop()
			return "", nil, fmt.Errorf("podman system service on %s: no answer in 30s", sock)
		case <-tick.C:
		}
	}
	return sock, stop, nil
}

// podmanInit are the paths podman puts into a container's own layer when it
// starts it (mount points of its bind mounts, /etc/mtab, /run): libpod's
// initInodes, which `podman diff` hides. docker keeps the same stubs in an
// init layer below the container's, so they never reach `docker commit`;
// `podman commit` keeps them. snap follows docker and `podman diff`: an
// image carrying /run/.containerenv would tell every program that looks for
// it that it runs under podman, wherever it runs.
var podmanInit = map[string]bool{
	"dev": true, "etc/hostname": true, "etc/hosts": true, "etc/resolv.conf": true, "proc": true,
	"run": true, "run/notify": true, "run/.containerenv": true, "run/secrets": true, "run/podman-init": true,
	"sys": true, "etc/mtab": true,
}

// podmanLayer hides podmanInit's paths from a layer. A directory among them
// is kept when something the container made lies beneath it, so no entry
// ever comes without its parent; so is /etc, which podman's stubs copy up
// (and touch), when its owner and mode are the image's.
type podmanLayer struct {
	w      diff.Walker
	lowers []string
}

func (p podmanLayer) Walk(ctx context.Context, fn func(diff.Change) error) error {
	var held []diff.Change // hidden directories, each an ancestor of the next
	return p.w.Walk(ctx, func(c diff.Change) error {
		for len(held) > 0 && !strings.HasPrefix(c.Path, held[len(held)-1].Path+"/") {
			held = held[:len(held)-1]
		}
		isDir := c.Kind != diff.Deleted && c.Info != nil && c.Info.IsDir()
		if podmanInit[c.Path] || (c.Path == "etc" && isDir && c.Kind == diff.Changed && !c.Opaque && sameOwnerMode(c.Info, lowerStat(p.lowers, c.Path))) {
			if isDir {
				held = append(held, c)
			}
			return nil
		}
		for _, h := range held {
			if err := fn(h); err != nil {
				return err
			}
		}
		held = held[:0]
		return fn(c)
	})
}

// lowerStat is the top-most lower's rel, nil where none has it.
func lowerStat(lowers []string, rel string) fs.FileInfo {
	for _, l := range lowers {
		if fi, err := os.Lstat(filepath.Join(l, rel)); err == nil {
			return fi
		}
	}
	return nil
}

func sameOwnerMode(a, b fs.FileInfo) bool {
	if a == nil || b == nil || a.Mode() != b.Mode() {
		return false
	}
	as, aok := a.Sys().(*syscall.Stat_t)
	bs, bok := b.Sys().(*syscall.Stat_t)
	return aok && bok && as.Uid == bs.Uid && as.Gid == bs.Gid
}

// podmanMerger is a podmanLayer over an overlay, and a Merger: snap diff
// lists what `podman diff` lists.
type podmanMerger struct {
	podmanLayer
	ov diff.Overlay
}

func (p podmanMerger) Merged() diff.Walker { return podmanDiff(p.ov) }

// podmanDiff lists an overlay upper's changes as `podman diff` does
// (containers/storage's OverlayChanges, then libpod's initInodes left out),
// which is not docker diff's merged view: every entry of the upper is
// listed, added unless a lower has its path (then changed, a directory only
// when its size, mode or mtime differ), a whiteout or an opaque directory
// deleted, and every ancestor not listed yet is listed changed before an
// added or deleted path. So a file copied up by a hard link to it is changed, a
// directory replaced is deleted, then its new entries listed by their
// paths.
type podmanDiff diff.Overlay

func (p podmanDiff) Walk(ctx context.Context, fn func(diff.Change) error) error {
	listed := map[string]bool{}
	emit := func(c diff.Change) error {
		if podmanInit[c.Path] {
			return nil
		}
		return fn(c)
	}
	return filepath.WalkDir(p.Upper, func(abs string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(p.Upper, abs)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		c := diff.Change{Kind: diff.Added, Path: rel, Abs: abs, Info: fi}
		if deleted, err := overlayDeleted(abs, fi); err != nil {
			return err
		} else if deleted {
			c.Kind, c.Info = diff.Deleted, nil
		} else if li := lowerStat(p.Lowers, rel); li != nil {
			if li.IsDir() && fi.IsDir() && li.Size() == fi.Size() && li.Mode() == fi.Mode() && sameFsTime(li.ModTime(), fi.ModTime()) {
				return nil
			}
			c.Kind = diff.Changed
		}
		if fi.IsDir() {
			listed[rel] = true
		}
		if c.Kind != diff.Changed {
			var parents []string
			for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
				if !listed[dir] {
					parents = append(parents, dir)
					listed[dir] = true
				}
			}
			for i := len(parents) - 1; i >= 0; i-- {
				if err := emit(diff.Change{Kind: diff.Changed, Path: parents[i], Abs: filepath.Join(p.Upper, parents[i])}); err != nil {
					return err
				}
			}
		}
		return emit(c)
	})
}

// overlayDeleted: a 0/0 character device (whiteout) or an opaque directory.
func overlayDeleted(abs string, fi fs.FileInfo) (bool, error) {
	switch {
	case fi.Mode()&fs.ModeCharDevice != 0:
		st, ok := fi.Sys().(*syscall.Stat_t)
		return ok && st.Rdev == 0, nil
	case fi.IsDir():
		for _, x := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
			buf := make([]byte, 8)
			n, err := unix.Lgetxattr(abs, x, buf)
			if err == nil && string(buf[:n]) == "y" {
				return true, nil
			}
			if err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
				return false, fmt.Errorf("%s: %w", abs, err)
			}
		}
	}
	return false, nil
}

// sameFsTime is containers/storage's: equal, or equal to the second where
// a side has no nanoseconds (it went through a tar).
func sameFsTime(a, b time.Time) bool {
	if a.Equal(b) {
		return true
	}
	if a.Nanosecond() != 0 && b.Nanosecond() != 0 {
		return false
	}
	return a.Unix() == b.Unix()
}

// podmanOpened turns what docker:// read from podman's compatible API into
// what `podman commit` reads from podman's own records, where the API shows
// something else:
//   - the API's Env is the one the process got, with HOSTNAME and HOME that
//     podman adds at every start; podman commit (and docker commit, whose
//     engine never puts them in Config) leaves them out, so snap drops
//     HOSTNAME and a HOME the image did not set (the API cannot tell that
//     from `podman run -e HOME=...`, which podman commit would keep);
//   - the API shows podman's numeric stop signal ("15") on every container;
//     podman commit keeps the image's, so snap does too;
//   - an empty Entrypoint or Labels comes as [] and {}: absent in the image.
//
// Where snap follows docker, not podman commit: the layer leaves out the
// stubs podman puts into the container's own layer (podmanInit); whiteouts
// have docker's mode 0600 (podman's keep the device's 0000); created_by is
// the container's command (podman writes "/bin/sh"); the message goes into
// the history entry's comment (podman puts "FROM <image>" there and the
// message in the config's top-level comment, and refuses -m for OCI
// images).
func podmanOpened(o *sourcing.Opened, c *ContainerJSON) {
	if ov, ok := o.Changes.(diff.Overlay); ok {
		o.Changes = podmanMerger{podmanLayer{ov, ov.Lowers}, ov}
	} else {
		o.Changes = podmanLayer{w: o.Changes}
	}
	var base dockerspec.DockerOCIImageConfig
	if o.Base != nil {
		var img dockerspec.DockerOCIImage
		if json.Unmarshal(o.Base.RawConfig, &img) == nil {
			base = img.Config
		}
	}
	var hostname struct{ Hostname string }
	_ = json.Unmarshal(c.Config, &hostname)
	cfg := o.Config
	cfg.Env = slices.DeleteFunc(cfg.Env, func(e string) bool {
		k, v, _ := strings.Cut(e, "=")
		switch k {
		case "HOSTNAME":
			return v == hostname.Hostname
		case "HOME":
			return !slices.ContainsFunc(base.Env, func(b string) bool { return strings.HasPrefix(b, "HOME=") })
		}
		return false
	})
	cfg.StopSignal = base.StopSignal
	if len(cfg.Entrypoint) == 0 {
		cfg.Entrypoint = nil
	}
	if len(cfg.Labels) == 0 {
		cfg.Labels = nil
	}
}
