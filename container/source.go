package container

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/runc/libcontainer"

	"snap/commit"
	"snap/diff"
	"snap/store"
)

// Source commits one of snap's own containers: its upper dir, against its
// init layer and image; frozen (cgroup freezer) while it is walked.
type Source struct {
	Name  string
	Pause bool
}

func (s Source) String() string { return s.Name }

func (s Source) Open(ctx context.Context, st *store.Store) (*commit.Opened, error) {
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
	if ep := meta.Entrypoint; ep != nil { // docker commits the container's
		cfg.Entrypoint, cfg.Cmd = slices.Clip(*ep), slices.Clip(meta.Args[len(*ep):])
		if len(cfg.Entrypoint) == 0 {
			cfg.Entrypoint = nil
		}
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = nil
		}
	} else if len(cfg.Entrypoint) == 0 {
		cfg.Cmd = meta.Args
	}
	o := &commit.Opened{
		Changes:   diff.Overlay{Upper: m.Upper(meta.ID), Lowers: lowers},
		Diff:      diff.Merged{Upper: m.Upper(meta.ID), Lowers: lowers},
		Base:      img,
		CreatedBy: strings.Join(meta.Args, " "),
		Config:    &cfg,
	}
	if s.Pause {
		if c, err := libcontainer.Load(m.State, meta.ID); err == nil {
			if st, _ := c.Status(); st == libcontainer.Running {
				if err := pause(ctx, c); err != nil {
					return nil, fmt.Errorf("pause %s: %w", meta.Name, err)
				}
				o.Close = func() error {
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
