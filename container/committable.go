package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"snap/diff"
	"snap/sourcing"
	"snap/store"
)

// Committable is one of snap's own containers as a commit reads it: its
// upper dir, against its init layer and image; frozen (cgroup freezer)
// while it is walked. Its walker is a sourcing.Merger and a
// sourcing.Squasher.
type Committable struct {
	Name  string
	Pause bool
}

func (s Committable) String() string { return s.Name }

func (s Committable) Open(ctx context.Context, st *store.Store) (*sourcing.Opened, error) {
	m := New(st)
	meta, err := m.Get(s.Name)
	if err != nil {
		return nil, err
	}
	lowers, img, err := m.Lowers(meta)
	if err != nil {
		return nil, err
	}
	var full dockerspec.DockerOCIImage
	if err := json.Unmarshal(img.RawConfig, &full); err != nil {
		return nil, err
	}
	cfg := full.Config
	cfg.Env, cfg.User = meta.Env, meta.User
	// snap runs in / when neither the image nor the run names a directory;
	// docker's config, and so its commit, keeps none then.
	if meta.Cwd != "/" || cfg.WorkingDir != "" {
		cfg.WorkingDir = meta.Cwd
	}
	cfg.Volumes = runVolumes(meta, cfg.Volumes)
	// docker commits the container's config: its entrypoint (the image's
	// unless --entrypoint replaced it) and its Cmd, what followed the
	// entrypoint on the command line (the image's when nothing did).
	ep := cfg.Entrypoint
	if meta.Entrypoint != nil {
		ep = *meta.Entrypoint
	}
	cmd := meta.Args
	if len(ep) <= len(cmd) && slices.Equal(cmd[:len(ep)], ep) {
		cmd = cmd[len(ep):]
	}
	cfg.Entrypoint, cfg.Cmd = nilIfEmpty(ep), nilIfEmpty(cmd)
	o := &sourcing.Opened{
		// The init layer (lowers[0]) holds the runtime's stubs: a
		// squash leaves it out, as every commit does (see Overlay.Whole).
		Changes:   diff.Overlay{Upper: m.Upper(meta.ID), Lowers: lowers, Init: 1},
		Base:      img,
		CreatedBy: strings.Join(cfg.Cmd, " "), // docker's: the Cmd alone
		Config:    &cfg,
	}
	if s.Pause {
		// One pausing commit of a container at a time, from before it
		// looks at the state to after its resume: another's resume
		// would thaw the container under this walk, and a container
		// another commit paused would look paused by the user here.
		unlock, err := m.lockCommit(ctx, meta)
		if err != nil {
			return nil, err
		}
		o.Close = func() error { unlock(); return nil }
		if c, err := libcontainer.Load(m.State, meta.ID); err == nil {
			if st, _ := c.Status(); st == libcontainer.Running {
				if err := pause(ctx, c); err != nil {
					unlock()
					return nil, fmt.Errorf("pause %s: %w", meta.Name, err)
				}
				o.Close = func() error {
					defer unlock()
					if err := c.Resume(); err != nil {
						return fmt.Errorf("resume %s: %w", meta.Name, err)
					}
					return nil
				}
			}
		}
	}
	return o, nil
}

// lockCommit takes the container's commit lock, waiting for the commit
// holding it until ctx ends.
func (m *Manager) lockCommit(ctx context.Context, meta *Meta) (unlock func(), err error) {
	f, err := os.OpenFile(m.path(meta.ID, "commit.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	if err := flockCtx(ctx, f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	return func() { f.Close() }, nil
}

// pause freezes the container, trying again a few times: on cgroup v1 the
// freezer can stay FREEZING while the container forks, and libcontainer
// then thaws it and gives up ("unable to freeze"; seen here on a loaded
// machine with a container spawning a process per loop). A commit must
// not go on unfrozen, so the last error is returned.
func pause(ctx context.Context, c *libcontainer.Container) error {
	var err error
	for range 5 {
		if err = c.Pause(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clip(s)
}
