package container

import (
	"context"
	"fmt"

	"github.com/opencontainers/runc/libcontainer"
)

// Pause freezes the container, as docker pause. It waits for a pausing
// commit of the container to end first: that commit resumes the container
// when its walk is done, which would undo this pause, and an unpause in the
// middle of its walk would thaw the container under it.
func (m *Manager) Pause(ctx context.Context, meta *Meta) error {
	return m.freezer(ctx, meta, (*libcontainer.Container).Pause)
}

// Unpause thaws the container, as docker unpause, after any pausing commit
// of it (see Pause).
func (m *Manager) Unpause(ctx context.Context, meta *Meta) error {
	return m.freezer(ctx, meta, (*libcontainer.Container).Resume)
}

func (m *Manager) freezer(ctx context.Context, meta *Meta, op func(*libcontainer.Container) error) error {
	unlock, err := m.lockCommit(ctx, meta)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := m.Load(meta)
	if err != nil {
		return err
	}
	if err := op(c); err != nil {
		return fmt.Errorf("container %s: %w", meta.Name, err)
	}
	return nil
}
