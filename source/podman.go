package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

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
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
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
// ever comes without its parent.
type podmanLayer struct{ w diff.Walker }

func (p podmanLayer) Walk(ctx context.Context, fn func(diff.Change) error) error {
	var held []diff.Change // hidden directories, each an ancestor of the next
	return p.w.Walk(ctx, func(c diff.Change) error {
		for len(held) > 0 && !strings.HasPrefix(c.Path, held[len(held)-1].Path+"/") {
			held = held[:len(held)-1]
		}
		if podmanInit[c.Path] {
			if c.Kind != diff.Deleted && c.Info != nil && c.Info.IsDir() {
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

// podmanMerger is a podmanLayer over a Merger, and a Merger itself.
type podmanMerger struct{ podmanLayer }

// Merged lists the changes as `podman diff` does: podmanInit's paths never.
func (p podmanMerger) Merged() diff.Walker {
	return podmanList{p.w.(sourcing.Merger).Merged()}
}

type podmanList struct{ w diff.Walker }

func (p podmanList) Walk(ctx context.Context, fn func(diff.Change) error) error {
	return p.w.Walk(ctx, func(c diff.Change) error {
		if podmanInit[c.Path] {
			return nil
		}
		return fn(c)
	})
}

// podmanOpened turns what docker:// read from podman's compatible API into
// what `podman commit` reads from podman's own records, where the API shows
// something else:
//   - the API's Env is the one the process got, with HOSTNAME and HOME that
//     podman adds at every start; podman commit (and docker commit, whose
//     engine never puts them in Config) leaves them out, so snap drops
//     HOSTNAME and a HOME the image did not set;
//   - the API shows podman's numeric stop signal ("15") on every container;
//     podman commit keeps the image's, so snap does too;
//   - an empty Entrypoint or Labels comes as [] and {}: absent in the image.
//
// What stays as docker does it, not as podman commit: created_by is the
// container's command (podman writes "/bin/sh") and the message goes into
// the history entry's comment (podman puts "FROM <image>" there and the
// message in the config's top-level comment, and refuses -m for OCI images).
func podmanOpened(o *sourcing.Opened, c *ContainerJSON) {
	if _, ok := o.Changes.(sourcing.Merger); ok {
		o.Changes = podmanMerger{podmanLayer{o.Changes}}
	} else {
		o.Changes = podmanLayer{o.Changes}
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
