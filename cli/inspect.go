package cli

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"snap/inspect"
)

func inspectFlags() []cli.Flag {
	return []cli.Flag{&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "Go `TEMPLATE` with docker's functions, or 'json'"}}
}

// inspectCommand is docker inspect: containers, then images, by name.
func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show containers and images as JSON, like docker inspect",
		UsageText: "snap inspect [-f TEMPLATE] [--type container|image] NAME...",
		Flags: append(inspectFlags(),
			&cli.StringFlag{Name: "type", Usage: "only `container` or image"}),
		Action: func(c *cli.Context) error {
			kind, err := inspect.ParseKind(c.String("type"))
			if err != nil {
				return usageError{err}
			}
			return runInspect(c, kind, "NAME")
		},
	}
}

// kindCommands are `snap image inspect` and `snap container inspect`.
func kindCommands() []*cli.Command {
	return []*cli.Command{kindInspect(inspect.KindImage), kindInspect(inspect.KindContainer)}
}

// kindInspect is docker's KIND inspect.
func kindInspect(kind inspect.Kind) *cli.Command {
	return &cli.Command{
		Name:            string(kind),
		Usage:           "manage " + string(kind) + "s",
		HideHelpCommand: true,
		Subcommands: []*cli.Command{{
			Name:      "inspect",
			Usage:     "show " + string(kind) + "s as JSON, like docker " + string(kind) + " inspect",
			UsageText: "snap " + string(kind) + " inspect [-f TEMPLATE] " + string(kind) + "...",
			Flags:     inspectFlags(),
			Action:    func(c *cli.Context) error { return runInspect(c, kind, strings.ToUpper(string(kind))) },
			OnUsageError: func(_ *cli.Context, err error, _ bool) error {
				return usageError{err}
			},
		}},
	}
}

// runInspect prints every object found and then names each one that was
// not, exiting 1, as docker does.
func runInspect(c *cli.Context, kind inspect.Kind, usage string) error {
	if c.NArg() < 1 {
		return usagef("%s needs at least one %s", strings.TrimPrefix(c.Command.HelpName, c.App.Name+" "), usage)
	}
	p, err := inspect.NewPrinter(c.App.Writer, c.String("format"))
	if err != nil {
		return usageError{err}
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	f := inspect.NewFinder(st)
	var errs []error
	for _, name := range c.Args().Slice() {
		v, err := f.Find(name, kind)
		if err == nil {
			err = p.Add(v)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := p.Flush(); err != nil {
		return err
	}
	if len(errs) == 0 {
		return nil
	}
	for _, err := range errs[:len(errs)-1] {
		fmt.Fprintf(c.App.ErrWriter, "snap: %v\n", err)
	}
	return errs[len(errs)-1] // printed by Run, as the others were here
}
