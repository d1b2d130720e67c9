package cli

import (
	"errors"
	"os"

	"github.com/containerd/console"
	"github.com/urfave/cli/v2"

	"snap/container"
)

// terminalFlags are run's and create's terminal flags.
func terminalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "keep stdin open (attached when not -d)"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the container a terminal (a pty)"},
		&cli.StringFlag{Name: "entrypoint", Usage: "replace the image's ENTRYPOINT with `CMD` (\"\" clears it)"},
	}
}

// terminalOptions reads them into o.
func terminalOptions(c *cli.Context, o *container.CreateOptions) error {
	o.Interactive, o.TTY, o.Detached = c.Bool("interactive"), c.Bool("tty"), c.Bool("detach")
	// docker run refuses -it without a terminal before it makes anything.
	if c.Command.Name == "run" && !c.Bool("detach") && o.Interactive && o.TTY && !isTerminal(os.Stdin) {
		return errNotATerminal
	}
	if c.IsSet("entrypoint") {
		ep := c.String("entrypoint")
		o.Entrypoint = &ep
	}
	return nil
}

// errNotATerminal is docker's refusal of -it when stdin is no terminal.
var errNotATerminal = errors.New("the input device is not a TTY")

// attachTerminal readies the user's terminal for a foreground process (a
// run's or an exec's) with the given -t and -i, as docker run does: a container with a TTY gets the size of snap's
// terminal (stdout's, else stdin's or stderr's); with -i too, stdin must be
// a terminal and is put in raw mode, so keys (Ctrl-C included) go to the
// container's pty as they are typed. restore puts it back; it must run
// however the run ends.
func attachTerminal(tty, interactive bool, stdio *container.Stdio) (restore func(), err error) {
	restore = func() {}
	if !tty {
		return restore, nil
	}
	for _, f := range []*os.File{os.Stdout, os.Stdin, os.Stderr} {
		if isTerminal(f) {
			stdio.Terminal = f
			break
		}
	}
	if !interactive {
		return restore, nil
	}
	in, err := console.ConsoleFromFile(os.Stdin)
	if err != nil {
		return nil, errNotATerminal // start -a of a container made with -it
	}
	if err := in.SetRaw(); err != nil {
		return nil, err
	}
	return func() { in.Reset() }, nil
}
