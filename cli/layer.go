package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"snap/compression"
	"snap/diff"
	"snap/drift"
	"snap/sourcing"
	"snap/store"
)

func sourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "upper", Usage: "overlayfs upper `DIR`"},
		&cli.StringFlag{Name: "rootfs", Usage: "complete root filesystem `DIR`, compared with the lowers"},
		&cli.StringSliceFlag{Name: "lower", Usage: "lower layer `DIR`, top-most first (repeat)"},
		&cli.StringFlag{Name: "upper-format", Value: "overlay", Usage: "whiteout convention of --upper: overlay or aufs"},
	}
}

// changeSource turns the --upper/--rootfs flags into a change source.
func changeSource(c *cli.Context) (diff.Walker, error) {
	upper, rootfs, lowers := c.String("upper"), c.String("rootfs"), c.StringSlice("lower")
	switch {
	case upper != "" && rootfs != "":
		return nil, usagef("--upper and --rootfs exclude each other")
	case upper != "":
		f, err := diff.ParseFormat(c.String("upper-format"))
		if err != nil {
			return nil, usageError{err}
		}
		return diff.Overlay{Upper: upper, Lowers: lowers, Format: f}, nil
	case rootfs != "":
		return diff.Rootfs{Root: rootfs, Lowers: lowers}, nil
	}
	return nil, usagef("%s needs --upper DIR or --rootfs DIR", c.Command.Name)
}

func layerCommand() *cli.Command {
	return &cli.Command{
		Name:      "layer",
		Usage:     "write one OCI layer from an upper dir or a rootfs",
		UsageText: "snap layer (--upper DIR | --rootfs DIR) [--lower DIR]... [-o FILE] [--compression none|gzip|zstd]",
		Flags: append(sourceFlags(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the layer to `FILE` (default stdout)"},
			&cli.StringFlag{Name: "compression", Value: "none", Usage: "none, gzip or zstd"},
			&cli.StringFlag{Name: "source-date-epoch", EnvVars: []string{"SOURCE_DATE_EPOCH"}, Usage: "clamp mtimes to these Unix `SECONDS`"},
			&cli.BoolFlag{Name: "sparse", Usage: "store holes as PAX sparse entries"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("layer: unexpected argument %q", c.Args().First())
			}
			src, err := changeSource(c)
			if err != nil {
				return err
			}
			opts, err := layerOptions(c)
			if err != nil {
				return err
			}
			out := c.String("output")
			if out == "" && isTerminal(c.App.Writer) {
				return usagef("layer: refusing to write a tar to a terminal; use -o FILE or redirect stdout")
			}
			if out == "" {
				_, err := diff.WriteLayer(c.Context, c.App.Writer, src, opts)
				return err
			}
			// WriteLayer hashes the tar only; a compressed blob's digest is
			// hashed here, once, as the store's blob writer does for a commit.
			var blob digest.Digester
			res, err := writeOutput(out, func(f *os.File) (diff.Result, error) {
				var w io.Writer = f
				if opts.Compression != compression.None {
					blob = digest.SHA256.Digester()
					w = io.MultiWriter(f, blob.Hash())
				}
				return diff.WriteLayer(c.Context, w, src, opts)
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(c.App.Writer, res.DiffID)
			if blob != nil {
				fmt.Fprintln(c.App.Writer, blob.Digest())
			}
			return nil
		},
	}
}

// maxSourceDateEpoch is 9999-12-31T23:59:59Z.
const maxSourceDateEpoch = 253402300799

func layerOptions(c *cli.Context) (diff.Options, error) {
	comp, err := compression.Parse(c.String("compression"))
	if err != nil {
		return diff.Options{}, usageError{err}
	}
	opts := diff.Options{Compression: comp, Sparse: c.Bool("sparse")}
	opts.SourceDateEpoch, err = sourceDateEpoch(c)
	return opts, err
}

// sourceDateEpoch reads --source-date-epoch (SOURCE_DATE_EPOCH); nil when unset.
func sourceDateEpoch(c *cli.Context) (*time.Time, error) {
	s := c.String("source-date-epoch")
	if s == "" {
		return nil, nil
	}
	// Up to the end of year 9999: JSON and RFC 3339 times (the image
	// config's created) have four-digit years.
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > maxSourceDateEpoch {
		return nil, usagef("source date epoch %q: want whole seconds from 0 (1970) to %d (year 9999)", s, maxSourceDateEpoch)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// writeOutput writes a user's output file (-o, --iidfile, save -o) as tar
// and docker do, and never replaces what is not a regular file:
//   - a missing path or a regular file: through a temp file in the same
//     directory renamed into place, so a killed snap never leaves half a
//     file there (a replaced file keeps its permission bits);
//   - anything else that exists (a device such as /dev/null, a FIFO): opened
//     for writing and written into, no rename, no chmod;
//   - a symlink: the rule applies to what it points at, and the link stays.
//
// The output is not fsynced (that costs a whole disk write of the layer, ~3 s
// per GiB here, and docker commit does not sync its layer data either); the
// image store, whose index points at its blobs, syncs them before the index.
func writeOutput[T any](path string, write func(*os.File) (T, error)) (T, error) {
	var zero T
	target, fi, err := resolveOutput(path)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", quoteName(path), err)
	}
	if fi != nil && fi.IsDir() {
		return zero, fmt.Errorf("%s: is a directory", quoteName(path))
	}
	if fi != nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			return zero, err
		}
		defer f.Close()
		v, err := write(f)
		if err != nil {
			return zero, err
		}
		if err := f.Close(); err != nil {
			return zero, fmt.Errorf("%s: %w", quoteName(path), err)
		}
		return v, nil
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return zero, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	v, err := write(f)
	if err != nil {
		return zero, err
	}
	if fi != nil {
		if err := f.Chmod(fi.Mode().Perm()); err != nil {
			return zero, fmt.Errorf("%s: %w", quoteName(path), err)
		}
	}
	if err := f.Close(); err != nil {
		return zero, fmt.Errorf("%s: %w", quoteName(path), err)
	}
	if err := os.Rename(f.Name(), target); err != nil {
		return zero, err
	}
	return v, nil
}

// resolveOutput follows path through symlinks, dangling ones included (the
// file is then made where the link points, as tar's open would), and
// returns the final path and its info (nil when it does not exist).
func resolveOutput(path string) (string, os.FileInfo, error) {
	p := path
	for range 40 { // the kernel's own limit (ELOOP)
		// A relative link is relative to its real directory: "../x" under a
		// symlinked directory is not what filepath.Join would make of it.
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if err != nil {
			return "", nil, err
		}
		p = filepath.Join(dir, filepath.Base(p))
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return p, nil, nil
		}
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return p, fi, nil
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", nil, err
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(filepath.Dir(p), link)
		}
		p = link
	}
	return "", nil, errors.New("too many levels of symbolic links")
}

func diffCommand() *cli.Command {
	return &cli.Command{
		Name:  "diff",
		Usage: "list changed paths like docker diff, or what differs between two images",
		UsageText: "snap diff CONTAINER [-H SOCKET] [--base IMAGE] [--exclude GLOB]... [--format json]\n" +
			"snap diff IMAGE IMAGE [--format json]\n" +
			"snap diff (--upper DIR | --rootfs DIR) [--lower DIR]... [--exclude GLOB]... [--format json]",
		Flags: append(sourceFlags(),
			excludeFlag(),
			&cli.StringFlag{Name: "base", Usage: "the `IMAGE` a dir:// or plain runc rootfs was made from"},
			&cli.StringFlag{Name: "runc-root", Value: "/run/runc", Usage: "runc's state `DIR`"},
			&cli.StringFlag{Name: "format", Usage: "'json' for a JSON array of {Kind, Path, Type, Size, OldSize}"},
			hostFlag(),
		),
		Action: func(c *cli.Context) error {
			asJSON, err := diffFormat(c.String("format"))
			if err != nil {
				return err
			}
			if c.NArg() > 2 {
				return usagef("diff takes one CONTAINER or two IMAGEs")
			}
			if c.NArg() == 2 {
				return imageDrift(c, asJSON)
			}
			// What a commit with the same rules leaves out is not listed.
			exclude, err := excludeRules(c)
			if err != nil {
				return err
			}
			rules, err := diff.CompileRules(exclude)
			if err != nil {
				return err
			}
			var src diff.Walker
			if c.NArg() == 1 {
				// Like docker diff: the container is read, not paused.
				cs, err := parseSource(c, c.Args().First())
				if err != nil {
					return err
				}
				st, err := openStore(c)
				if err != nil {
					return err
				}
				o, err := cs.Open(c.Context, st)
				if err != nil {
					return fmt.Errorf("diff %s: %w", quoteName(fmt.Sprint(cs)), err)
				}
				if o.Close != nil {
					defer o.Close()
				}
				src = o.Changes
				if m, ok := src.(sourcing.Merger); ok {
					src = m.Merged()
				}
			} else {
				var err error
				if src, err = changeSource(c); err != nil {
					return err
				}
				switch w := src.(type) {
				case diff.Overlay:
					if len(w.Lowers) > 0 {
						src = w.Merged()
					}
				case diff.Rootfs:
					src = w.Merged()
				}
			}
			src = diff.Filter(src, rules)
			if !asJSON {
				return src.Walk(c.Context, func(ch diff.Change) error {
					_, err := fmt.Fprintln(c.App.Writer, ch)
					return err
				})
			}
			var out []drift.Change
			err = src.Walk(c.Context, func(ch diff.Change) error {
				out = append(out, driftChange(ch))
				return nil
			})
			if err != nil {
				return err
			}
			return writeChangesJSON(c.App.Writer, out)
		},
	}
}

func diffFormat(f string) (asJSON bool, err error) {
	switch f {
	case "", "text":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usagef("diff format %q: want json (or text, the default)", f)
}

// imageDrift is snap diff IMAGE IMAGE: what differs from the first image's
// filesystem to the second's.
func imageDrift(c *cli.Context, asJSON bool) error {
	for _, f := range []string{"upper", "rootfs", "lower", "base"} {
		if c.IsSet(f) {
			return usagef("diff IMAGE IMAGE takes no --%s", f)
		}
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	var imgs [2]*store.Image
	for i, name := range c.Args().Slice() {
		if imgs[i], err = st.Lookup(name); err != nil {
			return err
		}
	}
	changes, err := drift.Compare(c.Context, st, imgs[0], imgs[1])
	if err != nil {
		return err
	}
	if asJSON {
		return writeChangesJSON(c.App.Writer, changes)
	}
	for _, ch := range changes {
		if _, err := fmt.Fprintln(c.App.Writer, ch); err != nil {
			return err
		}
	}
	return nil
}

// driftChange is a container's change as --format json shows it: the
// size of a regular file that is there; a walker knows no old size.
func driftChange(ch diff.Change) drift.Change {
	out := drift.Change{Kind: drift.Kind(ch.Kind), Path: "/" + ch.Path, Size: drift.NoSize, OldSize: drift.NoSize}
	if ch.Kind == diff.Deleted || ch.Info == nil {
		return out
	}
	switch m := ch.Info.Mode(); {
	case m.IsRegular():
		out.Type, out.Size = drift.TypeFile, ch.Info.Size()
	case m.IsDir():
		out.Type = drift.TypeDir
	case m&fs.ModeSymlink != 0:
		out.Type = drift.TypeSymlink
	case m&fs.ModeCharDevice != 0:
		out.Type = drift.TypeChar
	case m&fs.ModeDevice != 0:
		out.Type = drift.TypeBlock
	case m&fs.ModeNamedPipe != 0:
		out.Type = drift.TypeFifo
	}
	return out
}

// writeChangesJSON writes the changes as one JSON array ([] for none).
func writeChangesJSON(w io.Writer, changes []drift.Change) error {
	if changes == nil {
		changes = []drift.Change{}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // paths as they are: <, > and & are no HTML here
	return enc.Encode(changes)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
