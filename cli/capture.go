package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"snap/capture"
	"snap/progress"
	"snap/source"
)

func captureCommand() *cli.Command {
	return &cli.Command{
		Name:      "capture",
		Usage:     "make a golden image from a capture file: base, steps, exclude, generalize, verify, commit, tags, push",
		UsageText: "snap capture [-f capture.yaml] [-e KEY=VALUE]... [--pull] [--no-cache] [--no-push] [-q] [--iidfile FILE]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Value: "capture.yaml", Usage: "the capture `FILE` (- for stdin: then relative copy sources are relative to the current directory)"},
			&cli.StringSliceFlag{Name: "var", Aliases: []string{"e", "build-arg"}, Usage: "set a variable of the file, `KEY=VALUE` (repeat)"},
			&cli.BoolFlag{Name: "no-cache", Usage: "run every step again, even when nothing changed"},
			&cli.BoolFlag{Name: "no-push", Usage: "make and tag the image, but push nothing"},
			&cli.BoolFlag{Name: "pull", Usage: "pull a base named by a registry reference even when the store has it (a newer one)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the image ID"},
			&cli.StringFlag{Name: "source-date-epoch", EnvVars: []string{"SOURCE_DATE_EPOCH"}, Usage: "created time and mtime clamp, Unix `SECONDS`"},
			&cli.StringFlag{Name: "iidfile", Usage: "write the image ID to `FILE`"},
			hostFlag(),
		}, registryFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("capture takes no arguments; the capture file is -f FILE")
			}
			vars := map[string]string{}
			for _, kv := range c.StringSlice("var") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("variable %q: want KEY=VALUE", kv)
				}
				vars[k] = v
			}
			epoch, err := sourceDateEpoch(c)
			if err != nil {
				return err
			}
			f, err := readCaptureFile(c.String("file"), vars, c.App.Reader)
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			var out io.Writer = c.App.ErrWriter
			if c.Bool("quiet") {
				out = nil
			}
			var display func() progress.Display
			if out != nil && isTerminal(c.App.ErrWriter) {
				// docker's per-layer lines for pulls and pushes, on the
				// terminal only: piped, stderr keeps the capture's own lines.
				display = func() progress.Display { return progress.For(c.App.ErrWriter) }
			}
			res, err := capture.Capture(c.Context, st, f, capture.Options{
				Progress: display,
				Out:      out, SourceDateEpoch: epoch, NoCache: c.Bool("no-cache"), NoPush: c.Bool("no-push"), Pull: c.Bool("pull"),
				Registry: registryOptions(c),
				Source: source.Options{Pause: true, DockerHost: engineHost(c, "DOCKER_HOST"), PodmanHost: engineHost(c, "CONTAINER_HOST"),
					ContainerdAddress: os.Getenv("CONTAINERD_ADDRESS")},
			})
			if err != nil {
				return err
			}
			return finishImage(c, res.Image)
		},
	}
}

// readCaptureFile reads and parses the capture file; relative copy sources
// are relative to its directory (to the current one for stdin).
func readCaptureFile(name string, vars map[string]string, stdin io.Reader) (*capture.File, error) {
	if name != "-" {
		return capture.Load(name, vars)
	}
	data, err := io.ReadAll(io.LimitReader(stdin, capture.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("capture file from stdin: %w", err)
	}
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	f, err := capture.Parse(data, dir, vars)
	if err != nil {
		return nil, fmt.Errorf("capture file from stdin: %w", err)
	}
	return f, nil
}
