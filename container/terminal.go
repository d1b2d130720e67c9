package container

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
)

// attachment connects a run's process to its Stdio as docker does: without
// -i its stdin is /dev/null; with -t its stdin, stdout and stderr are one
// pty, made inside the container by libcontainer's init, whose master end
// comes back over a socket (runc's console socket) and is copied to and
// from the Stdio here.
type attachment struct {
	meta  *Meta
	stdio Stdio

	sock, peer *os.File        // the console socket: ours, and the end the init gets
	master     console.Console // the pty's master, once the init sent it
	output     sync.WaitGroup  // the copy of the pty's output
	winch      chan os.Signal
	done       chan struct{}
}

func newAttachment(meta *Meta, stdio Stdio) *attachment {
	return &attachment{meta: meta, stdio: stdio}
}

// prepare sets p's stdio (or console socket) and, for a pty, its first size:
// the init sizes the pty before the process starts, so a shell's first look
// at its window is already right.
func (a *attachment) prepare(p *libcontainer.Process) error {
	p.Stdin = nil // exec.Cmd opens /dev/null, docker's stdin without -i
	if a.meta.Interactive && !a.meta.TTY {
		p.Stdin = a.stdio.In
	}
	p.Stdout, p.Stderr = a.stdio.Out, a.stdio.Err
	if !a.meta.TTY {
		return nil
	}
	p.Stdout, p.Stderr = nil, nil
	// docker's daemon gives a TTY's process TERM=xterm unless its env
	// names one; it is the run's, never the container's config.
	if !slices.ContainsFunc(p.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		p.Env = append(slices.Clip(p.Env), "TERM=xterm")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container %s: console socket: %w", a.meta.Name, err)
	}
	a.sock, a.peer = os.NewFile(uintptr(fds[0]), "console-socket"), os.NewFile(uintptr(fds[1]), "console-socket-peer")
	p.ConsoleSocket = a.peer
	if ws, ok := a.size(); ok {
		p.ConsoleWidth, p.ConsoleHeight = ws.Width, ws.Height
	}
	return nil
}

// size is the user's terminal's size, when there is one.
func (a *attachment) size() (console.WinSize, bool) {
	if a.stdio.Terminal == nil {
		return console.WinSize{}, false
	}
	var ws console.WinSize
	w, err := unix.IoctlGetWinsize(int(a.stdio.Terminal.Fd()), unix.TIOCGWINSZ)
	if err != nil || w.Row == 0 || w.Col == 0 {
		return ws, false
	}
	ws.Height, ws.Width = w.Row, w.Col
	return ws, true
}

// started takes the pty's master from the init (which sent it before it
// reported ready, so it waits in the socket) and starts the copies; the
// pty then follows the user's terminal's size (SIGWINCH), as docker run -t.
func (a *attachment) started() error {
	if !a.meta.TTY {
		return nil
	}
	// Our copy of the init's end goes: a init that died without sending
	// reads as EOF instead of a wait forever.
	a.peer.Close()
	a.peer = nil
	f, err := utils.RecvFile(a.sock)
	a.sock.Close()
	a.sock = nil
	if err != nil {
		return fmt.Errorf("container %s: receive its terminal: %w", a.meta.Name, err)
	}
	master, err := console.ConsoleFromFile(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("container %s: its terminal: %w", a.meta.Name, err)
	}
	a.master = master
	out := a.stdio.Out
	if out == nil {
		out = io.Discard
	}
	a.output.Add(1)
	go func() {
		defer a.output.Done()
		// Ends with EIO once no process holds the pty's other end: all
		// of them went with the container's init.
		io.Copy(out, master)
	}()
	if a.meta.Interactive && a.stdio.In != nil {
		go io.Copy(master, a.stdio.In) // ends at the next write after close
	}
	if a.stdio.Terminal != nil {
		a.winch, a.done = make(chan os.Signal, 1), make(chan struct{})
		signal.Notify(a.winch, unix.SIGWINCH)
		if ws, ok := a.size(); ok {
			master.Resize(ws) // it may have changed since prepare
		}
		go func() {
			for {
				select {
				case <-a.winch:
					if ws, ok := a.size(); ok {
						master.Resize(ws)
					}
				case <-a.done:
					return
				}
			}
		}()
	}
	return nil
}

// finish waits, once the process is gone, for the rest of the pty's output,
// and lets go of everything the attachment holds.
func (a *attachment) finish() {
	if a.winch != nil {
		signal.Stop(a.winch)
		close(a.done)
		a.winch = nil
	}
	for _, f := range []*os.File{a.sock, a.peer} {
		if f != nil {
			f.Close()
		}
	}
	a.sock, a.peer = nil, nil
	if a.master != nil {
		a.output.Wait()
		a.master.Close()
		a.master = nil
	}
}
