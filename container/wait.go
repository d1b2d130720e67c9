package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// RunState is where a container is in its life: docker's State.Status.
type RunState int

const (
	StateCreated RunState = iota // never started
	StateRunning
	StatePaused
	StateExited
)

func (s RunState) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StatePaused:
		return "paused"
	case StateExited:
		return "exited"
	}
	return "created"
}

// Up says whether the container's process lives (docker ps without -a).
func (s RunState) Up() bool { return s == StateRunning || s == StatePaused }

// RunState reads the container's state from the runtime now, and returns
// it with the container's record as it stands then (an exit that was just
// recorded included).
func (m *Manager) RunState(meta *Meta) (RunState, *Meta) {
	meta = m.settled(meta)
	c, err := libcontainer.Load(m.State, meta.ID)
	if err != nil {
		if meta.ExitCode != nil || !meta.Finished.IsZero() || !meta.Started.IsZero() {
			return StateExited, meta
		}
		return StateCreated, meta
	}
	switch st, _ := c.Status(); st {
	case libcontainer.Running:
		return StateRunning, meta
	case libcontainer.Paused:
		return StatePaused, meta
	case libcontainer.Created:
		return StateCreated, meta
	}
	return StateExited, meta
}

// pollEvery is how often a waiter looks again at a lock or a log.
const pollEvery = 25 * time.Millisecond

// settled is meta once the exit of a run that has just ended is recorded:
// between the init's exit and the record, the run's owner (which holds the
// container's lock until then) unmounts the rootfs, and meta itself may be
// older than the record. Waiting for the owner means nobody sees an exited
// container without its code, unless its owner was killed.
func (m *Manager) settled(meta *Meta) *Meta {
	if meta.ExitCode != nil || meta.Started.IsZero() || m.alive(meta) {
		return meta
	}
	f, err := m.openLock(meta.ID)
	if err != nil {
		return meta
	}
	defer f.Close()
	// A run that is starting holds the lock too: its init soon lives.
	for deadline := time.Now().Add(ownerTimeout); ; time.Sleep(pollEvery) {
		if unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) == nil || m.alive(meta) || time.Now().After(deadline) {
			break
		}
	}
	if now, err := m.load(meta.ID); err == nil {
		return now
	}
	return meta
}

// load reads the container's record.
func (m *Manager) load(id string) (*Meta, error) {
	b, err := os.ReadFile(m.path(id, "meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	var meta Meta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	return &meta, nil
}

// ErrExitUnknown is returned (wrapped) by Wait for a container whose run
// ended with nobody to record its exit code (its owner was killed).
var ErrExitUnknown = errors.New("exited, its exit code unknown")

// Wait blocks until the container's current run ends and returns its exit
// code, as docker wait: at once for a container that is not running (its
// recorded code, 0 for one never started).
func (m *Manager) Wait(ctx context.Context, meta *Meta) (int, error) {
	now, err := m.waitRun(ctx, meta)
	if err != nil {
		return 0, err
	}
	if now.ExitCode != nil {
		return *now.ExitCode, nil
	}
	if now.Started.IsZero() {
		return 0, nil
	}
	return 0, fmt.Errorf("container %s: %w", meta.Name, ErrExitUnknown)
}

// waitRun waits until no run of the container is in progress and returns
// its record then. Runs are seen through the container's lock, which the
// owner of a run holds until the exit is recorded; a waiter also holds the
// waiters' lock in shared mode meanwhile, and Remove takes that one
// exclusively before it removes anything (drainWaiters), so a waiter reads
// the exit of a --rm container before the container goes.
func (m *Manager) waitRun(ctx context.Context, meta *Meta) (*Meta, error) {
	w, err := os.OpenFile(m.path(meta.ID, "wait.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, meta.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	defer w.Close()
	if err := flockCtx(ctx, w, unix.LOCK_SH); err != nil {
		return nil, err
	}
	l, err := m.openLock(meta.ID)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	defer l.Close()
	if err := flockCtx(ctx, l, unix.LOCK_SH); err != nil {
		return nil, err
	}
	// An init whose owner was killed runs on with nobody holding the
	// lock: wait for it all the same.
	for m.alive(meta) {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(pollEvery):
		}
	}
	now, err := m.load(meta.ID)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	return now, nil
}

// drainWaiters lets every waiter of the container read its exit before
// Remove removes it, and keeps new waiters out until then; the returned
// func lets them in (to find the container gone).
func (m *Manager) drainWaiters(meta *Meta) (release func()) {
	w, err := os.OpenFile(m.path(meta.ID, "wait.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {} // removed already (by its monitor, --rm)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ownerTimeout)
	defer cancel()
	flockCtx(ctx, w, unix.LOCK_EX) // past it a waiter is stuck: remove regardless
	return func() { w.Close() }
}

// flockCtx takes f's lock (how: LOCK_SH or LOCK_EX), looking again every
// pollEvery until ctx ends.
func flockCtx(ctx context.Context, f *os.File, how int) error {
	var t *time.Ticker
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if t == nil {
			t = time.NewTicker(pollEvery)
			defer t.Stop()
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}
