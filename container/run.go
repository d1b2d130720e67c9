package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
	_ "github.com/opencontainers/cgroups/devices" // lets libcontainer set device rules
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Stdio is where a container's process reads and writes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// Start runs the container's process. Detached, its output goes to the
// container's log and Start returns at once; otherwise Start streams the
// output, forwards SIGINT/SIGTERM, waits and returns the exit code.
func (m *Manager) Start(ctx context.Context, meta *Meta, io Stdio, detach bool) (int, error) {
	rootfs, err := m.Mount(meta)
	if err != nil {
		return 0, err
	}
	if old, err := libcontainer.Load(m.State, meta.ID); err == nil {
		if st, _ := old.Status(); st != libcontainer.Stopped {
			return 0, fmt.Errorf("container %s is already running", meta.Name)
		}
		old.Destroy()
	}
	spec := specconv.Example()
	spec.Root = &specs.Root{Path: rootfs}
	spec.Hostname = meta.Hostname
	spec.Process = nil
	for _, v := range meta.Volumes {
		parts := strings.Split(v, ":")
		opts := []string{"rbind", "rw"}
		if len(parts) == 3 && parts[2] == "ro" {
			opts = []string{"rbind", "ro"}
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: parts[1], Type: "bind", Source: parts[0], Options: opts})
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: meta.ID, Spec: spec, NoNewKeyring: true})
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	c, err := libcontainer.Create(m.State, meta.ID, cfg)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	uid, gid, err := lookupUser(rootfs, meta.User)
	if err != nil {
		c.Destroy()
		return 0, err
	}
	p := &libcontainer.Process{Args: meta.Args, Env: meta.Env, Cwd: meta.Cwd, UID: uid, GID: gid, Init: true}
	if detach {
		log, err := os.OpenFile(m.path(meta.ID, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			c.Destroy()
			return 0, err
		}
		defer log.Close()
		p.Stdout, p.Stderr = log, log
	} else {
		p.Stdin, p.Stdout, p.Stderr = io.In, io.Out, io.Err
	}
	if err := c.Run(p); err != nil {
		c.Destroy()
		return 0, fmt.Errorf("container %s: start %v: %w", meta.Name, meta.Args, err)
	}
	// Inspect's StartedAt; the exit code of an earlier run no longer holds.
	meta.Started, meta.ExitCode = time.Now().UTC(), nil
	if err := m.save(meta); err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		c.Destroy()
		return 0, fmt.Errorf("container %s: %w", meta.Name, err)
	}
	if detach {
		return 0, nil
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				p.Signal(s)
			case <-done:
				return
			}
		}
	}()
	state, err := p.Wait()
	c.Destroy()
	code := 0
	defer func() {
		meta.ExitCode, meta.Finished = &code, time.Now().UTC()
		m.save(meta) // the container may be gone already (--rm)
	}()
	if state != nil {
		if ws, ok := state.Sys().(syscall.WaitStatus); ok {
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	} else if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return 0, err
		}
		code = ee.ExitCode()
	}
	return code, nil
}

// lookupUser resolves USER ("name", "uid", "uid:gid") in the rootfs' passwd.
func lookupUser(rootfs, user string) (int, int, error) {
	if user == "" {
		return 0, 0, nil
	}
	name, group, _ := strings.Cut(user, ":")
	uid, gid := -1, 0
	if n, err := strconv.Atoi(name); err == nil {
		uid = n
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "etc/passwd")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 4 {
				continue
			}
			if f[0] == name || f[2] == name {
				uid, _ = strconv.Atoi(f[2])
				gid, _ = strconv.Atoi(f[3])
				break
			}
		}
	}
	if uid < 0 {
		return 0, 0, fmt.Errorf("user %q: not in the image's /etc/passwd", name)
	}
	if group != "" {
		g, err := strconv.Atoi(group)
		if err != nil {
			return 0, 0, fmt.Errorf("group %q: want a number", group)
		}
		gid = g
	}
	return uid, gid, nil
}

// Status is docker's words for the container's state ("Up 2 minutes",
// "Exited (0) 3 seconds ago").
func (m *Manager) Status(meta *Meta) string {
	exited := func() string {
		if meta.ExitCode == nil {
			return "Exited" // detached: nobody was there to see the code
		}
		return fmt.Sprintf("Exited (%d) %s ago", *meta.ExitCode, units.HumanDuration(time.Since(meta.Finished)))
	}
	c, err := libcontainer.Load(m.State, meta.ID)
	if err != nil {
		if meta.ExitCode != nil {
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

// Load returns the libcontainer container while it exists.
func (m *Manager) Load(meta *Meta) (*libcontainer.Container, error) {
	c, err := libcontainer.Load(m.State, meta.ID)
	if err != nil {
		return nil, fmt.Errorf("container %s is not running", meta.Name)
	}
	return c, nil
}

// Kill signals the container's init.
func (m *Manager) Kill(meta *Meta, sig os.Signal) error {
	c, err := m.Load(meta)
	if err != nil {
		return err
	}
	return c.Signal(sig)
}

// Remove deletes a stopped container (force: kills it first).
func (m *Manager) Remove(meta *Meta, force bool) error {
	if c, err := libcontainer.Load(m.State, meta.ID); err == nil {
		st, _ := c.Status()
		if st == libcontainer.Running || st == libcontainer.Paused {
			if !force {
				return fmt.Errorf("container %s is running: stop it or use -f", meta.Name)
			}
			if st == libcontainer.Paused {
				c.Resume()
			}
			c.Signal(unix.SIGKILL)
			for i := 0; i < 100; i++ { // a killed init still takes a moment to go
				if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if err := c.Destroy(); err != nil {
			return err
		}
	}
	unix.Unmount(m.Rootfs(meta.ID), unix.MNT_DETACH)
	return os.RemoveAll(m.path(meta.ID))
}

// Exec runs another process in a running container and returns its exit
// code, as docker exec does.
func (m *Manager) Exec(meta *Meta, args, env []string, cwd string, io Stdio) (int, error) {
	c, err := m.Load(meta)
	if err != nil {
		return 0, err
	}
	if st, _ := c.Status(); st != libcontainer.Running {
		return 0, fmt.Errorf("container %s is not running", meta.Name)
	}
	uid, gid, err := lookupUser(m.Rootfs(meta.ID), meta.User)
	if err != nil {
		return 0, err
	}
	if cwd == "" {
		cwd = meta.Cwd
	}
	p := &libcontainer.Process{Args: args, Env: append(slicesClone(meta.Env), env...), Cwd: cwd, UID: uid, GID: gid,
		Stdin: io.In, Stdout: io.Out, Stderr: io.Err}
	if err := c.Run(p); err != nil {
		return 0, fmt.Errorf("exec in %s: %w", meta.Name, err)
	}
	state, err := p.Wait()
	if state == nil {
		return 0, err
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
