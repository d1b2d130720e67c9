package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"snap/container"
)

func manager(c *cli.Context) (*container.Manager, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	return container.New(st), nil
}

func createFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "container name"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set `VAR=value`"},
		&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group]"},
		&cli.StringFlag{Name: "hostname", Usage: "hostname"},
		&cli.StringSliceFlag{Name: "volume", Aliases: []string{"v"}, Usage: "bind `HOST:CTR[:ro]`, or an anonymous volume at CTR (never committed)"},
		&cli.BoolFlag{Name: "rm", Usage: "remove the container when it exits"},
	}
	flags = append(flags, securityFlags()...)
	flags = append(flags, networkFlags()...)
	flags = append(flags, usernsFlags()...)
	return append(flags, terminalFlags()...)
}

func createOptions(c *cli.Context) (container.CreateOptions, error) {
	if c.NArg() < 1 {
		return container.CreateOptions{}, usagef("%s needs IMAGE [COMMAND [ARG...]]", c.Command.Name)
	}
	for _, v := range c.StringSlice("volume") {
		if p := strings.Split(v, ":"); len(p) == 1 && strings.HasPrefix(v, "/") {
			continue // CTR: an anonymous volume
		} else if len(p) < 2 || len(p) > 3 || !strings.HasPrefix(p[1], "/") || (len(p) == 3 && p[2] != "ro" && p[2] != "rw") {
			return container.CreateOptions{}, usagef("volume %q: want HOST:CTR[:ro] or CTR", v)
		}
	}
	name := c.String("name")
	if c.IsSet("name") {
		n, err := container.ValidName(name)
		if err != nil {
			return container.CreateOptions{}, usageError{err}
		}
		name = n
	}
	o := container.CreateOptions{
		Image: c.Args().First(), Name: name, Args: c.Args().Tail(), Env: c.StringSlice("env"),
		Cwd: c.String("workdir"), User: c.String("user"), Hostname: c.String("hostname"),
		Volumes: c.StringSlice("volume"), Remove: c.Bool("rm"),
	}
	for _, apply := range []func(*cli.Context, *container.CreateOptions) error{securityOptions, networkOptions, terminalOptions, usernsOptions} {
		if err := apply(c, &o); err != nil {
			return container.CreateOptions{}, err
		}
	}
	return o, nil
}

func createContainer(c *cli.Context) (*container.Manager, *container.Meta, error) {
	o, err := createOptions(c)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(c)
	if err != nil {
		return nil, nil, err
	}
	if _, err := ensureImage(c, st, o.Image); err != nil {
		return nil, nil, err
	}
	m := container.New(st)
	meta, err := m.Create(o)
	return m, meta, err
}

// exitCode carries a container's exit status out through cli.Run.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run a command in a new container",
		UsageText: "snap run [-d] [-i] [-t] [--rm] [--name N] [-e VAR=v] [-w DIR] [-u USER] [-v [HOST:]CTR[:ro]] [--hostname H]\n" +
			"         [--entrypoint CMD] [--network host|none] [--privileged] [--cap-add CAP] [--cap-drop CAP]\n" +
			"         [--security-opt seccomp=unconfined|PROFILE.json|no-new-privileges] [--read-only]\n" +
			"         [--pids-limit N] [--memory SIZE] [--cpus N] [--userns auto | --uidmap C:H:N --gidmap C:H:N]\n" +
			"         IMAGE [COMMAND [ARG...]]\n\nFlags go before IMAGE: everything after it is the container's command (snap run IMG sh -c 'ls -l').",
		Flags: append(createFlags(), &cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "run in the background, print the ID"}),
		Action: func(c *cli.Context) error {
			m, meta, err := createContainer(c)
			if err != nil {
				return err
			}
			return start(c, m, meta, c.Bool("detach"), meta.ID)
		},
	}
}

// start starts a container; detached, it prints what docker prints: run -d
// the ID, start the name.
func start(c *cli.Context, m *container.Manager, meta *container.Meta, detach bool, name string) error {
	stdio := container.Stdio{In: os.Stdin, Out: c.App.Writer, Err: c.App.ErrWriter}
	if !detach {
		restore, err := attachTerminal(meta.TTY, meta.Interactive, &stdio)
		if err != nil {
			return err
		}
		defer restore()
	}
	code, err := m.Start(c.Context, meta, stdio, detach)
	if err != nil {
		return err
	}
	if detach {
		fmt.Fprintln(c.App.Writer, name)
		return nil
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

func createCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a container without starting it",
		UsageText: "snap create [--name N] [-e VAR=v] ... IMAGE [COMMAND [ARG...]]\n\nFlags go before IMAGE: everything after it is the container's command.",
		Flags:     createFlags(),
		Action: func(c *cli.Context) error {
			_, meta, err := createContainer(c)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.App.Writer, meta.ID)
			return err
		},
	}
}

// eachContainer runs fn for every named container, the way docker's
// multi-container commands do.
func eachContainer(name string, fn func(c *cli.Context, m *container.Manager, meta *container.Meta) error) *cli.Command {
	return &cli.Command{
		Name: name,
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return usagef("%s needs CONTAINER", name)
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			for _, n := range c.Args().Slice() {
				meta, err := m.Get(n)
				if err != nil {
					return err
				}
				if err := fn(c, m, meta); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func containerCommands() []*cli.Command {
	startCmd := eachContainer("start", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		return start(c, m, meta, !c.Bool("attach"), meta.Name)
	})
	startCmd.Usage = "start a created or stopped container"
	startCmd.Flags = []cli.Flag{&cli.BoolFlag{Name: "attach", Aliases: []string{"a"}, Usage: "stay attached and return its exit code"}}

	stop := eachContainer("stop", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		if err := m.Stop(meta, time.Duration(c.Int("time"))*time.Second); err != nil {
			return err
		}
		_, err := fmt.Fprintln(c.App.Writer, meta.Name)
		return err
	})
	stop.Usage = "stop containers (SIGTERM, then SIGKILL)"
	stop.Flags = []cli.Flag{&cli.IntFlag{Name: "time", Aliases: []string{"t"}, Value: 10, Usage: "seconds before SIGKILL"}}

	kill := eachContainer("kill", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		sig := syscall.SIGKILL
		if s := c.String("signal"); s != "" {
			n, ok := signals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
			if !ok {
				return usagef("signal %q: unknown", s)
			}
			sig = n
		}
		return m.Kill(meta, sig)
	})
	kill.Usage = "signal containers"
	kill.Flags = []cli.Flag{&cli.StringFlag{Name: "signal", Aliases: []string{"s"}, Usage: "signal (default KILL)"}}

	rm := eachContainer("rm", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		if err := m.Remove(meta, c.Bool("force")); err != nil {
			return err
		}
		_, err := fmt.Fprintln(c.App.Writer, meta.Name)
		return err
	})
	rm.Usage = "remove containers"
	rm.UsageText = "snap rm [-f] [-v] CONTAINER...   (or -fv)"
	rm.Flags = []cli.Flag{
		&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill a running container first"},
		// docker's rm -v removes anonymous volumes; snap's live in the
		// container's directory and go with it, with or without -v (a bind's
		// host dir is never removed).
		&cli.BoolFlag{Name: "volumes", Aliases: []string{"v"}, Usage: "accepted as docker's; rm always removes the container's anonymous volumes"},
	}

	pause := eachContainer("pause", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		return m.Pause(c.Context, meta)
	})
	pause.Usage = "freeze containers (cgroup freezer)"
	unpause := eachContainer("unpause", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		return m.Unpause(c.Context, meta)
	})
	unpause.Usage = "thaw containers"

	logs := eachContainer("logs", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		o := container.LogOptions{Follow: c.Bool("follow"), Tail: -1}
		if t := c.String("tail"); t != "all" {
			n, err := strconv.Atoi(t)
			if err != nil {
				return usagef("--tail %q: want a number of lines or all", t)
			}
			o.Tail = max(n, -1) // docker: a negative count is all
		}
		return m.Logs(c.Context, meta, c.App.Writer, o)
	})
	logs.Usage = "print a detached container's output"
	logs.UsageText = "snap logs [-f] [--tail N] CONTAINER"
	logs.Flags = []cli.Flag{
		&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing until the container exits"},
		&cli.StringFlag{Name: "tail", Aliases: []string{"n"}, Value: "all", Usage: "only the last `N` lines"},
	}

	wait := eachContainer("wait", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		code, err := m.Wait(c.Context, meta)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.App.Writer, code)
		return err
	})
	wait.Usage = "wait for containers to exit and print their exit codes"
	wait.UsageText = "snap wait CONTAINER..."

	mount := eachContainer("mount", func(c *cli.Context, m *container.Manager, meta *container.Meta) error {
		p, err := m.Mount(meta)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(c.App.Writer, p)
		return err
	})
	mount.Usage = "mount a container's rootfs and print its path"

	exec := &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a running container",
		UsageText: "snap exec [-d] [-i] [-t] [-u USER] [-w DIR] [-e VAR=v] CONTAINER COMMAND [ARG...]\n\nFlags go before CONTAINER: everything after it is the command.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "start the command and return"},
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "attach stdin"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the command a terminal (a pty)"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group] (default: the container's)"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set `VAR=value`"},
		},
		Action: execAction,
	}
	return []*cli.Command{runCommand(), createCommand(), startCmd, exec, stop, kill, rm, pause, unpause, logs, wait, mount, psCommand()}
}

func execAction(c *cli.Context) error {
	if c.NArg() < 2 {
		return usagef("exec needs CONTAINER COMMAND")
	}
	o := container.ExecOptions{Args: c.Args().Tail(), Env: c.StringSlice("env"), Cwd: c.String("workdir"), User: c.String("user"),
		TTY: c.Bool("tty"), Interactive: c.Bool("interactive"), Detach: c.Bool("detach")}
	if o.Detach && o.TTY {
		return usagef("exec: -d with -t: nothing would hold the terminal once snap returns")
	}
	// docker exec refuses -it without a terminal before it runs anything.
	if !o.Detach && o.TTY && o.Interactive && !isTerminal(os.Stdin) {
		return errNotATerminal
	}
	m, err := manager(c)
	if err != nil {
		return err
	}
	meta, err := m.Get(c.Args().First())
	if err != nil {
		return err
	}
	stdio := container.Stdio{In: os.Stdin, Out: c.App.Writer, Err: c.App.ErrWriter}
	restore, err := attachTerminal(o.TTY, o.Interactive, &stdio)
	if err != nil {
		return err
	}
	defer restore()
	code, err := m.Exec(meta, o, stdio)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

var signals = map[string]syscall.Signal{
	"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP,
	"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
}

func psCommand() *cli.Command {
	return &cli.Command{
		Name:      "ps",
		Usage:     "list containers",
		UsageText: "snap ps [-a] [-q]   (or -aq)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "also stopped containers"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only IDs"},
		},
		Action: func(c *cli.Context) error {
			m, err := manager(c)
			if err != nil {
				return err
			}
			all, err := m.List()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.App.Writer, 10, 1, 3, ' ', 0)
			if !c.Bool("quiet") {
				fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tNAMES")
			}
			for _, meta := range all {
				state, meta := m.RunState(meta)
				if !c.Bool("all") && !state.Up() {
					continue
				}
				status := m.Status(meta)
				if c.Bool("quiet") {
					fmt.Fprintln(tw, meta.ID[:12])
					continue
				}
				command := strings.Join(meta.Args, " ")
				if len(command) > 20 {
					command = command[:19] + "…"
				}
				fmt.Fprintf(tw, "%s\t%s\t%q\t%s ago\t%s\t%s\n", meta.ID[:12], meta.ImageRef, command,
					units.HumanDuration(time.Since(meta.Created)), status, meta.Name)
			}
			return tw.Flush()
		},
	}
}
