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
	name             string // the container's, for errors
	tty, interactive bool   // docker's -t and -i
	stdio            Stdio

	sock, peer *os.File        // the console socket: ours, and the end the init gets
	afterStart []*os.File      // the process' ends of pipes, ours to close once it has them
	master     console.Console // the pty's master, once the init sent it
	output     sync.WaitGroup  // the copy of the pty's output
	winch      chan os.Signal
	done       chan struct{}
}

func newAttachment(name string, tty, interactive bool, stdio Stdio) *attachment {
	return &attachment{name: name, tty: tty, interactive: interactive, stdio: stdio}
}

// prepare sets p's stdio (or console socket) and, for a pty, its first size:
// the init sizes the pty before the process starts, so a shell's first look
// at its window is already right.
func (a *attachment) prepare(p *libcontainer.Process) error {
	p.Stdin = nil // exec.Cmd opens /dev/null, docker's stdin without -i
	if !a.tty {
		if a.interactive {
			in, err := a.hideReader(a.stdio.In)
			if err != nil {
				return err
			}
			p.Stdin = in
		}
		p.Stdout, p.Stderr = hideWriter(a.stdio.Out), hideWriter(a.stdio.Err)
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
		return fmt.Errorf("container %s: console socket: %w", a.name, err)
	}
	a.sock, a.peer = os.NewFile(uintptr(fds[0]), "console-socket"), os.NewFile(uintptr(fds[1]), "console-socket-peer")
	p.ConsoleSocket = a.peer
	if ws, ok := a.size(); ok {
		p.ConsoleWidth, p.ConsoleHeight = ws.Width, ws.Height
	}
	return nil
}

// The user's terminal never goes into the container as a file, as docker
// never hands it over: the process could change its settings, or, with
// CAP_SYS_ADMIN, type into it (TIOCSTI) after the run. It gets pipes, and
// snap copies.

func hideWriter(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		return struct{ io.Writer }{f} // exec.Cmd copies from a pipe
	}
	return w
}

// hideReader gives the process a pipe that a goroutine fills from r, when
// r is a terminal. exec.Cmd's own copy would do, but its Wait waits for
// that copy, which ends only at the next key pressed after the exit.
func (a *attachment) hideReader(r io.Reader) (io.Reader, error) {
	f, ok := r.(*os.File)
	if !ok || !isTerminal(f) {
		return r, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("container %s: stdin: %w", a.name, err)
	}
	go func() {
		io.Copy(pw, f) // ends at the first write after the process is gone
		pw.Close()
	}()
	a.afterStart = append(a.afterStart, pr)
	return pr, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
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
	a.closeAfterStart()
	if !a.tty {
		return nil
	}
	// Our copy of the init's end goes: an init that died without sending
	// reads as EOF instead of a wait forever.
	a.peer.Close()
	a.peer = nil
	f, err := utils.RecvFile(a.sock)
	a.sock.Close()
	a.sock = nil
	if err != nil {
		return fmt.Errorf("container %s: receive its terminal: %w", a.name, err)
	}
	master, err := console.ConsoleFromFile(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("container %s: its terminal: %w", a.name, err)
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
	if a.interactive && a.stdio.In != nil {
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

func (a *attachment) closeAfterStart() {
	for _, f := range a.afterStart {
		f.Close()
	}
	a.afterStart = nil
}

// finish waits, once the process is gone, for the rest of the pty's output,
// and lets go of everything the attachment holds.
func (a *attachment) finish() {
	a.closeAfterStart()
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
