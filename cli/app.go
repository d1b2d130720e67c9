// Package cli is snap's command line: it parses flags, calls the library and
// prints results. Nothing else lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/urfave/cli/v2"
)

// usageError marks errors in how snap was called (exit code 2).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// App builds the snap command line.
func App(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "snap",
		Usage: "commit and snapshot engine for container images",
		Description: "Flags go anywhere on the line, as docker's: before, between or after the arguments\n" +
			"(snap commit docker://c golden:1 --to-docker); -- ends them; short flags combine (snap ps -aq).\n" +
			"Global flags (--root) go before the command. For run, create and exec, everything after\n" +
			"the IMAGE or CONTAINER is the container's command, passed on as it is.",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", EnvVars: []string{"SNAP_ROOT"}, Usage: "image store `DIR`", Value: defaultRoot()},
			// snap's own flag, not urfave's Version: that one is added after
			// the line is parsed (flags anywhere), and prints one field.
			&cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version and exit"},
		},
		HideVersion: true,
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				_, err := fmt.Fprintln(c.App.Writer, BuildVersion().Short())
				return err
			}
			if c.NArg() > 0 {
				return usagef("%q is not a snap command; see 'snap --help'", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			layerCommand(),
			diffCommand(),
			commitCommand(),
			captureCommand(),
			historyCommand(),
			imagesCommand(),
			inspectCommand(),
			tagCommand(),
			rmiCommand(),
			pruneCommand(),
			importCommand(),
			loadCommand(),
			saveCommand(),
			pullCommand(),
			pushCommand(),
			loginCommand(),
			logoutCommand(),
			versionCommand(),
			completionCommand(),
			manCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {},
		// -c 'CMD ["a","b"]' holds commas that are not separators.
		DisableSliceFlagSeparator: true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
	}
	app.Commands = append(app.Commands, containerCommands()...)
	app.Commands = append(app.Commands, kindCommands()...)
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
		c.Before = checkCall
	}
	return app
}

// Signaled is the cause a run's context is cancelled with when snap gets a
// signal (context.WithCancelCause): Run then returns 128+the signal's
// number, the status a shell gives a command the signal ended.
type Signaled struct{ Signal syscall.Signal }

func (s Signaled) Error() string { return "received " + s.Signal.String() }

// Run runs snap with args and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := App(stdout, stderr)
	if len(args) > 1 && args[1] == completeCommand {
		// Before the line is parsed: the words are half typed.
		words := args[2:]
		cur := ""
		if len(words) > 0 {
			cur, words = words[len(words)-1], words[:len(words)-1]
		}
		for _, c := range complete(ctx, app, words, cur) {
			fmt.Fprintln(stdout, c)
		}
		return 0
	}
	err := runApp(ctx, app, args)
	if err == nil {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code) // the container's own status, as docker run passes it on
	}
	var sig Signaled
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &sig) {
		// The stop itself needs no message (a command the signal killed
		// prints none); an error of its own still does.
		if !errors.Is(err, context.Canceled) && !errors.Is(err, os.ErrDeadlineExceeded) {
			fmt.Fprintf(stderr, "snap: %v\n", err)
		}
		return 128 + int(sig.Signal)
	}
	fmt.Fprintf(stderr, "snap: %v\n", withHint(err))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func defaultRoot() string {
	if os.Geteuid() == 0 {
		return "/var/lib/snap"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d + "/snap"
	}
	if h, err := os.UserHomeDir(); err == nil {
		return h + "/.local/share/snap"
	}
	return ".snap"
}
