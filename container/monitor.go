package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"

	"snap/store"
)

// monitorArg is the hidden first argument under which snap re-executes
// itself as a detached container's monitor (conmon's job in podman): it
// starts the container, waits on its init, records the exit, unmounts the
// rootfs and honours --rm, with no snap command around any more. It holds
// the container's stdin (-i) and its TTY's master (-t), and writes all the
// output to the log.
const monitorArg = "container-monitor"

// monitorReport is what a monitor tells the command that spawned it once
// the container runs, or why it does not.
type monitorReport struct {
	Error   string `json:",omitempty"`
	Running bool   `json:",omitempty"` // the error is ErrRunning
}

// startMonitor starts a detached container through a monitor process and
// returns once the container's process runs.
func (m *Manager) startMonitor(meta *Meta) error {
	if m.alive(meta) {
		return fmt.Errorf("container %s %w", meta.Name, ErrRunning)
	}
	root, err := filepath.Abs(m.st.Root())
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// /proc/self/exe: the monitor is this very binary, even if the file
	// on disk was replaced since it started.
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{os.Args[0], monitorArg, root, meta.ID},
		Dir:         "/",
		ExtraFiles:  []*os.File{w},
		SysProcAttr: &unix.SysProcAttr{Setsid: true}, // no terminal, no job control signals
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("container %s: monitor: %w", meta.Name, err)
	}
	go cmd.Wait() // reaps it if this process outlives the container
	var rep monitorReport
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return fmt.Errorf("container %s: the monitor exited before the container started", meta.Name)
	}
	switch {
	case rep.Running:
		return fmt.Errorf("container %s %w", meta.Name, ErrRunning)
	case rep.Error != "":
		return errors.New(rep.Error)
	}
	return nil
}

// monitor is the monitor process' whole life; it returns its exit code.
func monitor(root, id string) int {
	// Nothing a terminal or a closed reader sends may end it early.
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
	out := os.NewFile(3, "report")
	reported := false
	report := func(err error) {
		var rep monitorReport
		if err != nil {
			rep.Error, rep.Running = err.Error(), errors.Is(err, ErrRunning)
		}
		json.NewEncoder(out).Encode(rep)
		out.Close()
		reported = true
	}
	st, err := store.Open(root)
	if err != nil {
		report(err)
		return 1
	}
	m := New(st)
	meta, err := m.Get(id)
	if err != nil {
		report(err)
		return 1
	}
	log, err := os.OpenFile(m.Log(meta), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		report(fmt.Errorf("container %s: %w", meta.Name, err))
		return 1
	}
	defer log.Close()
	stdio := Stdio{Out: log, Err: log}
	if meta.Interactive && !meta.TTY {
		// docker run -di: stdin stays open with nobody writing, so a
		// process that reads it waits instead of seeing EOF. (A TTY's
		// master, which the monitor holds, does the same for -dit.)
		r, w, err := os.Pipe()
		if err != nil {
			report(fmt.Errorf("container %s: %w", meta.Name, err))
			return 1
		}
		defer w.Close()
		defer r.Close()
		stdio.In = r
	}
	_, err = m.run(meta, stdio, false, func() { report(nil) })
	if !reported {
		report(err) // the command that spawned us says it, and removes a --rm container
		return 1
	}
	if err != nil {
		fmt.Fprintf(log, "snap: %v\n", err)
	}
	if meta.Remove {
		if err := m.Remove(meta, true); err != nil {
			fmt.Fprintf(log, "snap: %v\n", err)
			return 1
		}
	}
	return 0
}

// monitorIfAsked runs the monitor when snap was re-executed as one.
func monitorIfAsked() {
	if len(os.Args) == 4 && os.Args[1] == monitorArg {
		os.Exit(monitor(os.Args[2], os.Args[3]))
	}
}
