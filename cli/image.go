package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	units "github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"snap/capture"
	"snap/commit"
	"snap/compression"
	"snap/diff"
	"snap/history"
	"snap/source"
	"snap/sourcing"
	"snap/store"
)

func openStore(c *cli.Context) (*store.Store, error) {
	return store.OpenContext(c.Context, c.String("root"))
}

func commitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "author", Aliases: []string{"a"}, Usage: "author (e.g. \"Ops <ops@example.com>\")"},
		&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "commit message"},
		&cli.StringSliceFlag{Name: "change", Aliases: []string{"c"}, Usage: "apply a Dockerfile `INSTRUCTION` to the config (repeat)"},
		&cli.StringFlag{Name: "compression", Value: "gzip", Usage: "layer compression: gzip, zstd or none"},
		&cli.StringFlag{Name: "source-date-epoch", EnvVars: []string{"SOURCE_DATE_EPOCH"}, Usage: "created time and mtime clamp, Unix `SECONDS`"},
		&cli.StringFlag{Name: "iidfile", Usage: "write the image ID to `FILE`"},
	}
}

func commitOptions(c *cli.Context) (commit.Options, error) {
	lo, err := layerOptions(c)
	if err != nil {
		return commit.Options{}, err
	}
	exclude, err := excludeRules(c)
	if err != nil {
		return commit.Options{}, err
	}
	return commit.Options{
		Author: c.String("author"), Message: c.String("message"), Changes: c.StringSlice("change"),
		Compression: lo.Compression, SourceDateEpoch: lo.SourceDateEpoch, Squash: c.Bool("squash"),
		Exclude: exclude,
	}, nil
}

// excludeFlag is --exclude: paths a commit leaves out (moby#12594 asked
// docker commit for it in 2015; docker never shipped it).
func excludeFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "exclude", Usage: "leave out the paths the `GLOB` covers (absolute; *, ?, [...], ** for any depth; repeat)"}
}

// excludeRules reads --exclude as omit rules, checked before anything is
// opened or made: a bad pattern is one line naming it.
func excludeRules(c *cli.Context) ([]diff.Rule, error) {
	var rules []diff.Rule
	for _, p := range c.StringSlice("exclude") {
		rules = append(rules, diff.Rule{Pattern: p, Action: diff.Omit})
	}
	if _, err := diff.CompileRules(rules); err != nil {
		return nil, fmt.Errorf("--exclude: %w", err)
	}
	return rules, nil
}

func finishImage(c *cli.Context, img *store.Image) error {
	if f := c.String("iidfile"); f != "" {
		if _, err := writeOutput(f, func(f *os.File) (struct{}, error) {
			_, err := f.WriteString(img.ID.String())
			return struct{}{}, err
		}); err != nil {
			return fmt.Errorf("iidfile: %w", err)
		}
	}
	_, err := fmt.Fprintln(c.App.Writer, img.ID)
	return err
}

// parseSource reads a commit's or a diff's CONTAINER argument.
func parseSource(c *cli.Context, arg string) (sourcing.Source, error) {
	src, err := source.Parse(arg, source.Options{
		Pause: c.Bool("pause"), Base: c.String("base"), RuncRoot: c.String("runc-root"),
		DockerHost: engineHost(c, "DOCKER_HOST"), PodmanHost: engineHost(c, "CONTAINER_HOST"),
		// As ctr and nerdctl find containerd.
		ContainerdAddress: os.Getenv("CONTAINERD_ADDRESS"),
	})
	if errors.Is(err, source.ErrEmptyName) {
		return nil, usageError{err}
	}
	return src, err
}

// hostFlag is docker's -H: the engine a docker:// or podman:// container
// lives in, over DOCKER_HOST (docker's) or CONTAINER_HOST (podman-remote's).
func hostFlag() cli.Flag {
	return &cli.StringFlag{Name: "host", Aliases: []string{"H"}, Usage: "the engine's `SOCKET` (unix:///...) for docker:// and podman:// (default: $DOCKER_HOST, $CONTAINER_HOST)"}
}

// engineHost is --host when the command has it and it is set, else env,
// as the docker CLI and podman-remote find their engine.
func engineHost(c *cli.Context, env string) string {
	if h := c.String("host"); h != "" {
		return h
	}
	return os.Getenv(env)
}

func commitCommand() *cli.Command {
	return &cli.Command{
		Name:      "commit",
		Usage:     "create a new image from a container's changes",
		UsageText: "snap commit [-a AUTHOR] [-m MESSAGE] [-c INSTRUCTION]... [-p=false] [-H SOCKET] [--base IMAGE] [--squash] [--exclude GLOB]... [--iidfile FILE] [--push] CONTAINER [REPO[:TAG]] [--to-docker]",
		Flags: append(append(commitFlags(),
			&cli.StringFlag{Name: "base", Usage: "the `IMAGE` a dir:// rootfs was made from"},
			&cli.BoolFlag{Name: "squash", Usage: "one layer holding the whole filesystem"},
			excludeFlag(),
			&cli.BoolFlag{Name: "pause", Aliases: []string{"p"}, Value: true, Usage: "pause the container during the commit"},
			&cli.BoolFlag{Name: "to-docker", Usage: "also load the new image into the docker engine"},
			&cli.StringFlag{Name: "runc-root", Value: "/run/runc", Usage: "runc's state `DIR`, for runc:// containers"},
			hostFlag(),
			&cli.BoolFlag{Name: "push", Usage: "push the new image to its REPO's registry when the commit lands"},
		), registryFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("commit needs CONTAINER [REPO[:TAG]]")
			}
			if c.Bool("push") && c.NArg() < 2 {
				return usagef("commit --push needs REPO[:TAG] to push to")
			}
			opts, err := commitOptions(c)
			if err != nil {
				return err
			}
			opts.Tag = c.Args().Get(1)
			src, err := parseSource(c, c.Args().First())
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			if base := c.String("base"); base != "" {
				if _, err := ensureImage(c, st, base); err != nil {
					return err
				}
			}
			if isTerminal(c.App.ErrWriter) {
				opts.Progress = c.App.ErrWriter
			}
			img, err := commit.Commit(c.Context, st, src, opts)
			if err != nil {
				return err
			}
			if c.Bool("push") {
				// The image ID stays the one line on stdout, as without
				// --push: what the push says goes to stderr.
				pc := *c
				pc.App = &cli.App{Writer: c.App.ErrWriter, ErrWriter: c.App.ErrWriter}
				if err := push(&pc, st, img.Tags[0], "", registryOptions(c), false); err != nil {
					return fmt.Errorf("commit: the image %s is stored, but: %w", img.ID, err)
				}
			}
			if c.Bool("to-docker") {
				eng, err := source.NewEngine(engineHost(c, "DOCKER_HOST"))
				if err == nil {
					err = eng.LoadFromStore(c.Context, st, img)
				}
				if err != nil {
					return fmt.Errorf("commit: --to-docker: %w", err)
				}
			}
			return finishImage(c, img)
		},
	}
}

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "create an image from a rootfs tarball or directory",
		UsageText: "snap import FILE|DIR|- [REPO[:TAG]] [-m MSG] [-c INSTRUCTION]...",
		Flags:     commitFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("import needs FILE|DIR|- [REPO[:TAG]]")
			}
			opts, err := commitOptions(c)
			if err != nil {
				return err
			}
			opts.Tag = c.Args().Get(1)
			if opts.Tag != "" {
				if _, err := store.ParseRef(opts.Tag); err != nil {
					return err
				}
			}
			src := c.Args().First()
			st, err := openStore(c)
			if err != nil {
				return err
			}
			var img *store.Image
			if fi, err := os.Stat(src); err == nil && fi.IsDir() {
				if opts.Message == "" {
					opts.Message = "Imported from " + src
				}
				img, err = commit.Commit(c.Context, st, sourcing.Dir{Root: src}, opts)
				if err != nil {
					return err
				}
			} else {
				in, done, err := openInput(c.Context, src)
				if err != nil {
					return fmt.Errorf("import %s: %w", src, err)
				}
				defer done()
				if img, err = commit.Import(c.Context, st, bufio.NewReaderSize(in, 1<<20), src, opts); err != nil {
					return err
				}
			}
			return finishImage(c, img)
		},
	}
}

func historyCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "show the history of an image",
		UsageText: "snap history [--no-trunc] [-H] [-q] [--format FMT] IMAGE",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "no-trunc", Usage: "don't truncate output"},
			&cli.BoolFlag{Name: "human", Aliases: []string{"H"}, Value: true, Usage: "sizes and dates in human-readable form"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only image IDs"},
			&cli.StringFlag{Name: "format", Usage: "Go template, 'table TEMPLATE' or 'json'"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("history needs one IMAGE")
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			img, err := st.Lookup(c.Args().First())
			if err != nil {
				return err
			}
			entries, err := history.Of(img)
			if err != nil {
				return err
			}
			return history.Render(c.App.Writer, entries, history.Options{
				NoTrunc: c.Bool("no-trunc"), Human: c.Bool("human"), Quiet: c.Bool("quiet"), Format: c.String("format"),
			})
		},
	}
}

func imageSize(img *store.Image) int64 {
	var n int64
	for _, l := range img.Manifest.Layers {
		var s int64
		fmt.Sscan(l.Annotations[store.AnnotationContentSize], &s)
		n += s
	}
	return n
}

func imagesCommand() *cli.Command {
	return &cli.Command{
		Name:  "images",
		Usage: "list images",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only image IDs"},
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "also the intermediate images of captures' steps (their cache)"}},
		Action: func(c *cli.Context) error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			imgs, err := st.Images()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.App.Writer, 10, 1, 3, ' ', 0)
			if !c.Bool("quiet") {
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			}
			for _, img := range imgs {
				// A broken image is named once on stderr, not given a row:
				// scripts read stdout (images -q | xargs ...), and a row of
				// blanks for a size and date no one can read would pass for
				// an image that works. The warning says how to remove it.
				if img.Err != nil {
					fmt.Fprintf(c.App.ErrWriter, "snap: warning: image %s: %v (snap rmi %s removes it)\n", img.Name(), img.Err, img.Name())
					continue
				}
				if len(img.Tags) == 0 && img.Manifest.Annotations[capture.AnnotationStep] != "" && !c.Bool("all") {
					continue // docker images hides build intermediates the same way
				}
				id := img.ID.Encoded()[:12]
				if c.Bool("quiet") {
					fmt.Fprintln(tw, id)
					continue
				}
				created := "N/A"
				if img.Config.Created != nil {
					created = units.HumanDuration(time.Since(*img.Config.Created)) + " ago"
				}
				size := units.HumanSizeWithPrecision(float64(imageSize(img)), 3)
				tags := img.Tags
				if len(tags) == 0 {
					tags = []string{"<none>:<none>"}
				}
				for _, t := range tags {
					i := strings.LastIndex(t, ":")
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t[:i], t[i+1:], id, created, size)
				}
			}
			return tw.Flush()
		},
	}
}

func tagCommand() *cli.Command {
	return &cli.Command{
		Name:      "tag",
		Usage:     "tag an image",
		UsageText: "snap tag IMAGE REPO[:TAG]",
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usagef("tag needs IMAGE and REPO[:TAG]")
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			return st.Tag(c.Args().Get(0), c.Args().Get(1))
		},
	}
}

func rmiCommand() *cli.Command {
	return &cli.Command{
		Name:      "rmi",
		Usage:     "remove images (untag; blobs go with prune)",
		UsageText: "snap rmi [-f] IMAGE...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "untag an image containers use (it stays as <none>)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return usagef("rmi needs IMAGE")
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			for _, name := range c.Args().Slice() {
				done, err := m.RemoveImage(name, c.Bool("force"))
				if err != nil {
					return err
				}
				for _, d := range done {
					fmt.Fprintln(c.App.Writer, d)
				}
			}
			return nil
		},
	}
}

func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "remove blobs no image reaches",
		Action: func(c *cli.Context) error {
			st, err := openStore(c)
			if err != nil {
				return err
			}
			rep, err := st.Prune(c.Context)
			if err != nil {
				return err
			}
			for _, img := range rep.Unwalked {
				fmt.Fprintf(c.App.ErrWriter, "snap: warning: image %s: %v: blobs are kept while it is in the store (snap rmi %s removes it)\n", img.Name(), img.Err, img.Name())
			}
			_, err = fmt.Fprintf(c.App.Writer, "Total reclaimed space: %s\n", units.HumanSize(float64(rep.Freed)))
			return err
		},
	}
}

func saveCommand() *cli.Command {
	return &cli.Command{
		Name:      "save",
		Usage:     "write images to a docker-archive (docker load takes it)",
		UsageText: "snap save -o FILE IMAGE... [--format docker-archive|oci-archive]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "`FILE` (default stdout)"},
			&cli.StringFlag{Name: "format", Value: "docker-archive", Usage: "docker-archive or oci-archive"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return usagef("save needs IMAGE")
			}
			save := (*store.Store).SaveDockerArchive
			switch c.String("format") {
			case "docker-archive":
			case "oci-archive":
				save = (*store.Store).SaveOCIArchive
			default:
				return usagef("save format %q: want docker-archive or oci-archive", c.String("format"))
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			var imgs []*store.Image
			for _, name := range c.Args().Slice() {
				img, err := st.Lookup(name)
				if err != nil {
					return err
				}
				if ref, err := store.ParseRef(name); err == nil {
					img.Tags = []string{ref} // docker save NAME:TAG names only that tag
				}
				imgs = append(imgs, img)
			}
			out := c.String("output")
			if out == "" {
				if isTerminal(c.App.Writer) {
					return usagef("save: refusing to write an archive to a terminal; use -o FILE")
				}
				return save(st, c.Context, c.App.Writer, imgs)
			}
			_, err = writeOutput(out, func(f *os.File) (struct{}, error) {
				return struct{}{}, save(st, c.Context, f, imgs)
			})
			return err
		},
	}
}

func loadCommand() *cli.Command {
	return &cli.Command{
		Name:      "load",
		Usage:     "load images from a docker-archive or an OCI archive",
		UsageText: "snap load -i FILE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "`FILE` (default stdin)"},
			&cli.StringFlag{Name: "compression", Value: "gzip", Usage: "store layers as gzip, zstd or none"},
		},
		Action: func(c *cli.Context) error {
			comp, err := compression.Parse(c.String("compression"))
			if err != nil {
				return usageError{err}
			}
			// The file itself, unbuffered: a plain archive in a regular
			// file is read in place, where its layers lie.
			in, done, err := openInput(c.Context, c.String("input"))
			if err != nil {
				return fmt.Errorf("load: %w", err)
			}
			defer done()
			st, err := openStore(c)
			if err != nil {
				return err
			}
			imgs, err := st.LoadArchive(c.Context, in, comp)
			if err != nil {
				return fmt.Errorf("load: %w", err)
			}
			for _, img := range imgs {
				for _, t := range img.Tags {
					fmt.Fprintf(c.App.Writer, "Loaded image: %s\n", t)
				}
				if len(img.Tags) == 0 {
					fmt.Fprintf(c.App.Writer, "Loaded image ID: %s\n", img.ID)
				}
			}
			return nil
		},
	}
}
