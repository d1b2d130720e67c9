package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	_ "github.com/opencontainers/cgroups/devices" // lets libcontainer set device rules
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ErrRunning is returned (wrapped) when a container is started twice.
var ErrRunning = errors.New("is already running")

// Stdio is where a container's process reads and writes. In is read only
// for a container made Interactive (docker's -i); without, the process
// reads /dev/null.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
	// Terminal is the user's terminal, if any: a container with a TTY
	// gets its size and follows it (see attachment).
	Terminal *os.File
}

// Start runs the container's process. Detached, a monitor process (snap
// itself, in a session of its own) starts the container, waits on it,
// records its exit and unmounts its rootfs; its output goes to the
// container's log and Start returns once the process runs. Otherwise Start
// streams the output, forwards SIGINT/SIGTERM/SIGHUP, waits, unmounts and
// returns the exit code. A container created with Remove (--rm) is removed
// when it exits, or when it fails to start.
func (m *Manager) Start(ctx context.Context, meta *Meta, stdio Stdio, detach bool) (int, error) {
	var code int
	var err error
	if detach {
		err = m.startMonitor(meta)
		if err == nil {
			return 0, nil // the monitor removes a --rm container when it exits
		}
	} else {
		code, err = m.run(meta, stdio, true, func() {})
	}
	if meta.Remove && !errors.Is(err, ErrRunning) {
		if rerr := m.Remove(meta, true); err == nil {
			err = rerr
		}
	}
	return code, err
}

// run owns one run of the container: under the container's lock it mounts
// the rootfs, starts the init, calls started, waits for the init to exit,
// records the exit code, and leaves neither a mount nor runtime state.
func (m *Manager) run(meta *Meta, stdio Stdio, forward bool, started func()) (int, error) {
	lock, err := m.lockToStart(meta)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	meta.ExitCode, meta.Finished = nil, time.Time{} // from an earlier run
	if err := m.save(meta); err != nil {
		return 0, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	rootfs, err := m.Mount(meta)
	if err != nil {
		return 0, err
	}
	var sigs *forwarder
	if forward {
		sigs = catchSignals()
		defer sigs.stop()
	}
	att := newAttachment(meta.Name, meta.TTY, meta.Interactive, stdio)
	defer att.finish()
	c, p, err := m.startInit(meta, rootfs, att)
	if err != nil {
		m.unmount(meta)
		return 0, err
	}
	if sigs != nil {
		sigs.to(p)
	}
	started()
	state, err := p.Wait()
	att.finish()
	code := -1
	if state != nil {
		code = exitStatus(state)
	} else {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
	}
	meta.Finished = time.Now().UTC()
	if code >= 0 {
		meta.ExitCode = &code
	}
	// Unmount before the exit is recorded and before the state goes, so
	// whoever sees an exit code or no state sees no mount.
	uerr := m.unmount(meta)
	m.save(meta) // a concurrent rm may have removed the container already
	c.Destroy()
	if code < 0 {
		return 0, fmt.Errorf("container %s: wait: %w", meta.Name, err)
	}
	return code, uerr
}

// lockToStart takes the container's lock for a new run. A run still
// holding it is either live (ErrRunning) or finishing its cleanup (waited for).
func (m *Manager) lockToStart(meta *Meta) (*os.File, error) {
	f, err := m.openLock(meta.ID)
	if err != nil {
		return nil, err
	}
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		if m.alive(meta) {
			f.Close()
			return nil, fmt.Errorf("container %s %w", meta.Name, ErrRunning)
		}
		if !lockWithin(f, ownerTimeout) {
			f.Close()
			return nil, fmt.Errorf("container %s %w", meta.Name, ErrRunning)
		}
	}
	if old, err := libcontainer.Load(m.State, meta.ID); err == nil {
		// State left by a run whose owner was killed: its init may live on.
		if st, _ := old.Status(); st != libcontainer.Stopped {
			f.Close()
			return nil, fmt.Errorf("container %s %w", meta.Name, ErrRunning)
		}
		old.Destroy()
	}
	return f, nil
}

// startInit creates the libcontainer container on rootfs and starts its init.
func (m *Manager) startInit(meta *Meta, rootfs string, att *attachment) (*libcontainer.Container, *libcontainer.Process, error) {
	stdio := att.stdio
	cfg, err := m.config(meta, rootfs)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	c, err := libcontainer.Create(m.State, meta.ID, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	u, err := lookupUser(rootfs, meta.User)
	if err != nil {
		c.Destroy()
		return nil, nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	p := &libcontainer.Process{Args: meta.Args, Env: u.withHome(processEnv(meta)), Cwd: meta.Cwd, UID: u.UID, GID: u.GID, AdditionalGroups: u.Groups, Init: true,
		Stdin: stdio.In, Stdout: stdio.Out, Stderr: stdio.Err}
	if err := att.prepare(p); err != nil {
		c.Destroy()
		return nil, nil, err
	}
	if err := c.Run(p); err != nil {
		c.Destroy()
		return nil, nil, fmt.Errorf("container %s: start %v: %w", meta.Name, meta.Args, err)
	}
	if err := att.started(); err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		c.Destroy()
		return nil, nil, err
	}
	// Inspect's StartedAt; the exit code of an earlier run no longer holds.
	meta.Started, meta.ExitCode, meta.Finished = time.Now().UTC(), nil, time.Time{}
	if err := m.save(meta); err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		c.Destroy()
		return nil, nil, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	return c, p, nil
}

// forwarder passes the signals a user sends snap (Ctrl-C, kill) to a
// container's process, as docker run and docker exec do. It catches them
// from its creation, so one sent while the process starts waits for it.
type forwarder struct {
	sigs chan os.Signal
	done chan struct{}
}

func catchSignals() *forwarder {
	f := &forwarder{sigs: make(chan os.Signal, 8), done: make(chan struct{})}
	signal.Notify(f.sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	return f
}

// to forwards to p, which must have started.
func (f *forwarder) to(p *libcontainer.Process) {
	go func() {
		for {
			select {
			case s := <-f.sigs:
				p.Signal(s)
			case <-f.done:
				return
			}
		}
	}()
}

func (f *forwarder) stop() {
	signal.Stop(f.sigs)
	close(f.done)
}

// exitStatus is the shell's view of how a process ended: its code, or
// 128+N when signal N killed it.
func exitStatus(state *os.ProcessState) int {
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok {
		return state.ExitCode()
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Status is docker's words for the container's state ("Up 2 minutes",
// "Exited (0) 3 seconds ago").
func (m *Manager) Status(meta *Meta) string {
	meta = m.settled(meta)
	exited := func() string {
		if meta.ExitCode == nil {
			return "Exited" // its owner was killed: nobody saw the code
		}
		return fmt.Sprintf("Exited (%d) %s ago", *meta.ExitCode, units.HumanDuration(time.Since(meta.Finished)))
	}
	c, err := libcontainer.Load(m.State, meta.ID)
	if err != nil {
		if meta.ExitCode != nil || !meta.Finished.IsZero() {
			return exited()
		}
		return "Created"
	}
	st, err := c.Status()
	if err != nil {
		return "Unknown"
	}
	up := "Up"
	if s, err := c.State(); err == nil {
		up = "Up " + units.HumanDuration(time.Since(s.Created))
	}
	switch st {
	case libcontainer.Running:
		return up
	case libcontainer.Paused:
		return up + " (Paused)"
	case libcontainer.Created:
		return "Created"
	}
	return exited()
}

// alive reports whether the container's init exists (running, paused, or
// created and not yet exec'd).
func (m *Manager) alive(meta *Meta) bool {
	c, err := libcontainer.Load(m.State, meta.ID)
	if err != nil {
		return false
	}
	st, err := c.Status()
	return err == nil && st != libcontainer.Stopped
}

// Load returns the libcontainer container while it exists.
func (m *Manager) Load(meta *Meta) (*libcontainer.Container, error) {
	c, err := libcontainer.Load(m.State, meta.ID)
	if err != nil {
		return nil, fmt.Errorf("container %s is not running", meta.Name)
	}
	return c, nil
}

// downTimeout bounds the wait for a SIGKILLed init to go, and ownerTimeout
// the wait for a run's owner to finish its cleanup after its init went.
const (
	downTimeout  = 10 * time.Second
	ownerTimeout = 10 * time.Second
)

// waitDown waits until the container's init is gone, up to d.
func waitDown(c *libcontainer.Container, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill signals the container's init. A SIGKILL also waits for the container
// to go and its rootfs to be unmounted, as docker kill waits for it.
func (m *Manager) Kill(meta *Meta, sig os.Signal) error {
	c, err := m.Load(meta)
	if err != nil {
		return err
	}
	if err := c.Signal(sig); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("container %s is not running", meta.Name)
		}
		return fmt.Errorf("container %s: %w", meta.Name, err)
	}
	if sig != unix.SIGKILL {
		return nil
	}
	if !waitDown(c, downTimeout) {
		return fmt.Errorf("container %s: still running %v after SIGKILL", meta.Name, downTimeout)
	}
	return m.cleanup(meta)
}

// Stop sends SIGTERM, then SIGKILL after timeout, as docker stop does, and
// returns once the container is down and its rootfs unmounted. Stopping a
// container that is not running does nothing, as in docker.
func (m *Manager) Stop(meta *Meta, timeout time.Duration) error {
	if c, err := libcontainer.Load(m.State, meta.ID); err == nil {
		if st, _ := c.Status(); st != libcontainer.Stopped {
			if err := c.Signal(unix.SIGTERM); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
				return fmt.Errorf("container %s: %w", meta.Name, err)
			}
			if st == libcontainer.Paused {
				c.Resume() // a frozen process cannot act on SIGTERM
			}
			if !waitDown(c, timeout) {
				if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
					return fmt.Errorf("container %s: %w", meta.Name, err)
				}
				if !waitDown(c, downTimeout) {
					return fmt.Errorf("container %s: still running %v after SIGKILL", meta.Name, downTimeout)
				}
			}
		}
	}
	return m.cleanup(meta)
}

// cleanup waits for the owner of the container's last run (a monitor or a
// foreground run) to finish, then does what an owner that was killed left
// undone: drops the state of a stopped init and unmounts the rootfs.
func (m *Manager) cleanup(meta *Meta) error {
	f, err := m.openLock(meta.ID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // removed by its monitor (--rm)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	lockWithin(f, ownerTimeout) // past it the owner is stuck (stopped?): clean up regardless
	if c, err := libcontainer.Load(m.State, meta.ID); err == nil {
		if st, _ := c.Status(); st != libcontainer.Stopped {
			return nil // started again meanwhile
		}
		// The owner is gone without recording the exit: the code is lost,
		// the container has exited all the same.
		if now, err := m.Get(meta.ID); err == nil && now.Finished.IsZero() {
			now.Finished = time.Now().UTC()
			m.save(now)
		}
		if err := c.Destroy(); err != nil {
			return fmt.Errorf("container %s: %w", meta.Name, err)
		}
	}
	return m.unmount(meta)
}

// Remove deletes a stopped container (force: kills it first).
func (m *Manager) Remove(meta *Meta, force bool) error {
	if c, err := libcontainer.Load(m.State, meta.ID); err == nil {
		if st, _ := c.Status(); st != libcontainer.Stopped {
			if !force {
				return fmt.Errorf("container %s is running: stop it or use -f", meta.Name)
			}
			c.Signal(unix.SIGKILL) // thaws a paused one too
			if !waitDown(c, downTimeout) {
				return fmt.Errorf("container %s: still running %v after SIGKILL", meta.Name, downTimeout)
			}
		}
	}
	defer m.drainWaiters(meta)()
	f, err := m.openLock(meta.ID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // its monitor removed it (--rm)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	lockWithin(f, ownerTimeout)
	if c, err := libcontainer.Load(m.State, meta.ID); err == nil {
		if err := c.Destroy(); err != nil {
			return fmt.Errorf("container %s: %w", meta.Name, err)
		}
	}
	if err := m.unmount(meta); err != nil {
		return err
	}
	if err := os.RemoveAll(m.mountDir(meta.ID)); err != nil {
		return err
	}
	return os.RemoveAll(m.path(meta.ID))
}

// ExecOptions are docker exec's settings for one process.
type ExecOptions struct {
	Args []string
	Env  []string // over the container's
	Cwd  string   // "": the container's
	User string   // "": the container's
	// TTY and Interactive are as the container's (docker exec's -t, -i),
	// for this process alone.
	TTY, Interactive bool
	// Detach starts the process and returns: nothing reads its output and
	// nobody waits for it, as docker exec -d.
	Detach bool
}

// ErrDetachedTTY is returned (wrapped) for a detached exec that asks for a
// terminal: snap keeps no process that would hold its master once the
// command returns.
var ErrDetachedTTY = errors.New("a detached process cannot have a terminal")

// Exec runs another process in a running container and returns its exit
// code, as docker exec does: its stdio is attached as run's (see
// attachment); SIGINT, SIGTERM and SIGHUP sent to snap go to the process;
// a process killed by signal N gives 128+N.
func (m *Manager) Exec(meta *Meta, o ExecOptions, stdio Stdio) (int, error) {
	if o.Detach && o.TTY {
		return 0, fmt.Errorf("exec in %s: %w", meta.Name, ErrDetachedTTY)
	}
	c, err := m.Load(meta)
	if err != nil {
		return 0, err
	}
	if st, _ := c.Status(); st != libcontainer.Running {
		return 0, fmt.Errorf("container %s is not running", meta.Name)
	}
	if o.User == "" {
		o.User = meta.User
	}
	u, err := lookupUser(m.Rootfs(meta.ID), o.User)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", meta.Name, err)
	}
	if o.Cwd != "" && !path.IsAbs(o.Cwd) {
		return 0, fmt.Errorf("exec in %s: working directory %q: %w", meta.Name, o.Cwd, ErrNotAbsolute)
	}
	if o.Cwd == "" {
		o.Cwd = meta.Cwd
	}
	p := &libcontainer.Process{Args: o.Args, Env: u.withHome(processEnv(meta, o.Env)), Cwd: o.Cwd, UID: u.UID, GID: u.GID, AdditionalGroups: u.Groups}
	if o.Detach {
		if err := c.Run(p); err != nil { // exec.Cmd gives nil stdio /dev/null
			return 0, fmt.Errorf("exec in %s: %w", meta.Name, err)
		}
		return 0, nil
	}
	att := newAttachment(meta.Name, o.TTY, o.Interactive, stdio)
	defer att.finish()
	if err := att.prepare(p); err != nil {
		return 0, err
	}
	sigs := catchSignals()
	defer sigs.stop()
	if err := c.Run(p); err != nil {
		return 0, fmt.Errorf("exec in %s: %w", meta.Name, err)
	}
	if err := att.started(); err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		return 0, err
	}
	sigs.to(p)
	state, err := p.Wait()
	att.finish()
	if state == nil {
		return 0, fmt.Errorf("exec in %s: %w", meta.Name, err)
	}
	return exitStatus(state), nil
}
