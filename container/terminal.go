package container

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

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
	readers    []*os.File      // our ends of the output pipes
	copies     sync.WaitGroup  // the copies from them
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
		var err error
		if p.Stdout, err = a.hideWriter(a.stdio.Out); err != nil {
			return err
		}
		if p.Stderr, err = a.hideWriter(a.stdio.Err); err != nil {
			return err
		}
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

// No file of snap's goes into the container as it is, as docker never
// hands one over: given the user's terminal, the process could change its
// settings, read what the user types after the run (a process an exec left
// behind), or, with CAP_SYS_ADMIN, type into it (TIOCSTI); given a host
// file (output redirected), it could reopen it through /proc/self/fd and
// read or truncate what it held before; given a pipe, reopen its other
// end. It gets pipes of its own, and snap copies.

// hideWriter gives the process a pipe that a goroutine copies to w, when
// w is a file. The copy may outlive the process (a process it left behind
// holds the pipe): finish waits for it as long as docker waits for an
// exec's streams, then drops it.
func (a *attachment) hideWriter(w io.Writer) (io.Writer, error) {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return w, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("container %s: output: %w", a.name, err)
	}
	a.afterStart = append(a.afterStart, pw)
	a.readers = append(a.readers, pr)
	a.copies.Add(1)
	go func() {
		defer a.copies.Done()
		// A failed write (a full disk under the log) drops the rest, as
		// docker drops what it cannot log: the process never blocks on
		// a pipe nobody reads.
		if _, err := io.Copy(f, pr); err != nil {
			io.Copy(io.Discard, pr)
		}
	}()
	return pw, nil
}

// streamsGrace is how long the output of a process that has exited is
// still copied (docker's exec waits 2s for its streams).
const streamsGrace = 2 * time.Second

// hideReader gives the process a pipe that a goroutine fills from r, when
// r is a file. exec.Cmd's own copy would do, but its Wait waits for that
// copy, which for a terminal ends only at the next key pressed after the
// exit.
func (a *attachment) hideReader(r io.Reader) (io.Reader, error) {
	f, ok := r.(*os.File)
	if !ok || f == nil {
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
	if a.readers != nil {
		done := make(chan struct{})
		go func() {
			a.copies.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(streamsGrace):
		}
		for _, r := range a.readers {
			r.Close() // ends a copy still reading
		}
		a.readers = nil
	}
	if a.master != nil {
		a.output.Wait()
		a.master.Close()
		a.master = nil
	}
}
