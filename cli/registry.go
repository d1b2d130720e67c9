package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/console"
	"github.com/urfave/cli/v2"

	"snap/compression"
	"snap/progress"
	"snap/registry"
	"snap/store"
)

// registryFlags are the flags of every command that talks to a registry.
func registryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "tls-verify", Value: true, Usage: "need TLS with a verified certificate (loopback registries may be plain HTTP)"},
		&cli.StringFlag{Name: "cert-dir", Value: registry.DefaultCertsDir, Usage: "`DIR` with a HOST:PORT directory of CA certificates (*.crt) per registry"},
	}
}

func registryOptions(c *cli.Context) registry.Options {
	return registry.Options{
		Insecure:  c.IsSet("tls-verify") && !c.Bool("tls-verify"),
		CertsDir:  c.String("cert-dir"),
		UserAgent: "snap/" + BuildVersion().Version,
	}
}

func pullCommand() *cli.Command {
	return &cli.Command{
		Name:      "pull",
		Usage:     "pull an image from a registry",
		UsageText: "snap pull [-q] [--platform OS/ARCH[/VARIANT]] [--tls-verify=false] [--cert-dir DIR] NAME[:TAG|@DIGEST]",
		Flags: append(registryFlags(),
			&cli.StringFlag{Name: "platform", Usage: "the `OS/ARCH[/VARIANT]` to pick from a multi-platform image (default: this machine's)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the image reference"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("pull needs NAME[:TAG|@DIGEST]")
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			opts := registryOptions(c)
			opts.Platform = c.String("platform")
			return pull(c, st, c.Args().First(), opts, c.Bool("quiet"))
		},
	}
}

// lastComponent is what follows a reference's last '/'.
func lastComponent(ref string) string {
	if i := strings.LastIndexByte(ref, '/'); i >= 0 {
		return ref[i+1:]
	}
	return ref
}

func pull(c *cli.Context, st *store.Store, ref string, opts registry.Options, quiet bool) error {
	tr := newTransfer(c.App.Writer, quiet)
	defer tr.close()
	if !strings.ContainsAny(lastComponent(ref), ":@") {
		tr.say("Using default tag: latest")
	}
	if r, err := registry.ParseReference(ref, opts); err == nil {
		tr.say("%s: Pulling from %s", r.Identifier(), r.Context().RepositoryStr())
	}
	opts.Progress = tr.d
	p, err := registry.Pull(c.Context, st, ref, opts)
	if err != nil {
		return err
	}
	tr.say("Digest: %s", p.Digest)
	status := "Image is up to date for "
	if p.Downloaded > 0 {
		status = "Downloaded newer image for "
	}
	tr.say("Status: %s%s", status, p.Image.Name())
	tr.close()
	_, err = fmt.Fprintln(c.App.Writer, p.Reference.Name())
	return err
}

func pushCommand() *cli.Command {
	return &cli.Command{
		Name:      "push",
		Usage:     "push an image to a registry",
		UsageText: "snap push [-q] [--compression gzip|zstd] [--tls-verify=false] [--cert-dir DIR] IMAGE [NAME[:TAG]]",
		Flags: append(registryFlags(),
			&cli.StringFlag{Name: "compression", Value: "gzip", Usage: "compress layers stored uncompressed as gzip or zstd on the way out"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the pushed reference and digest"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("push needs IMAGE [NAME[:TAG]]")
			}
			opts := registryOptions(c)
			comp, err := compression.Parse(c.String("compression"))
			if err != nil || comp == compression.None {
				return usagef("--compression %q: want gzip or zstd", c.String("compression"))
			}
			opts.Compression = comp
			st, err := openStore(c)
			if err != nil {
				return err
			}
			return push(c, st, c.Args().First(), c.Args().Get(1), opts, c.Bool("quiet"))
		},
	}
}

func push(c *cli.Context, st *store.Store, image, ref string, opts registry.Options, quiet bool) error {
	dest := ref
	if dest == "" {
		dest = image
	}
	tr := newTransfer(c.App.Writer, quiet)
	defer tr.close()
	if r, err := registry.ParseReference(dest, opts); err == nil {
		tr.say("The push refers to repository [%s]", r.Context().Name())
	}
	opts.Progress = tr.d
	p, err := registry.Push(c.Context, st, image, ref, opts)
	if err != nil {
		return err
	}
	tr.close()
	if quiet {
		_, err = fmt.Fprintf(c.App.Writer, "%s@%s\n", p.Reference.Context().Name(), p.Digest)
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "%s: digest: %s size: %d\n", p.Reference.Identifier(), p.Digest, p.Size)
	return err
}

func loginCommand() *cli.Command {
	return &cli.Command{
		Name:      "login",
		Usage:     "log in to a registry (credentials kept as docker keeps them)",
		UsageText: "snap login [-u USER] [-p PASSWORD | --password-stdin] [--tls-verify=false] [--cert-dir DIR] [REGISTRY]",
		Flags: append(registryFlags(),
			&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "user name"},
			&cli.StringFlag{Name: "password", Aliases: []string{"p"}, Usage: "password (visible to other users: prefer --password-stdin)"},
			&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from standard input"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usagef("login takes at most one REGISTRY")
			}
			user, password := c.String("username"), c.String("password")
			if c.Bool("password-stdin") {
				if c.IsSet("password") {
					return usagef("--password and --password-stdin are mutually exclusive")
				}
				if user == "" {
					return usagef("--password-stdin needs --username")
				}
				p, err := readPassword(os.Stdin)
				if err != nil {
					return fmt.Errorf("login: reading the password: %w", err)
				}
				password = p
			}
			if user == "" || password == "" {
				// As docker login: ask on a terminal, with no echo for the
				// password.
				if !isTerminal(os.Stdin) {
					return usagef("login needs --username and a password (--password-stdin)")
				}
				var err error
				if user, password, err = promptLogin(c.App.ErrWriter, user); err != nil {
					return fmt.Errorf("login: %w", err)
				}
			}
			reg := c.Args().First()
			if err := registry.Login(c.Context, reg, user, password, registryOptions(c)); err != nil {
				return err
			}
			_, err := fmt.Fprintln(c.App.Writer, "Login Succeeded")
			return err
		},
	}
}

// readPassword reads one line, as docker's --password-stdin does (the
// trailing newline, and a \r before it, are not part of the password).
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

func logoutCommand() *cli.Command {
	return &cli.Command{
		Name:      "logout",
		Usage:     "forget a registry's credentials",
		UsageText: "snap logout [REGISTRY]",
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usagef("logout takes at most one REGISTRY")
			}
			reg := c.Args().First()
			had, err := registry.Logout(reg)
			if err != nil {
				return err
			}
			if reg == "" {
				reg = "docker.io"
			}
			if !had {
				_, err = fmt.Fprintf(c.App.Writer, "Not logged in to %s\n", reg)
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "Removing login credentials for %s\n", reg)
			return err
		},
	}
}

// transfer is what a pull or a push shows: per-layer progress on a
// terminal (docker's lines, redrawn in place) and its message lines; piped,
// only the message lines; quiet, nothing.
type transfer struct {
	w     io.Writer
	d     progress.Display
	term  bool
	quiet bool
}

func newTransfer(w io.Writer, quiet bool) *transfer {
	t := &transfer{w: w, d: progress.Discard.(progress.Display), quiet: quiet}
	if !quiet {
		t.d = progress.For(w)
		_, t.term = t.d.(*progress.Terminal)
	}
	return t
}

// say prints a message line, between the progress lines on a terminal.
func (t *transfer) say(format string, a ...any) {
	switch {
	case t.quiet:
	case t.term:
		t.d.Line(fmt.Sprintf(format, a...))
	default:
		fmt.Fprintf(t.w, format+"\n", a...)
	}
}

func (t *transfer) close() { t.d.Close() }

// ensureImage is the store's image name, pulled first, as docker run pulls
// a missing image, when the store lacks it and name names a registry.
func ensureImage(c *cli.Context, st *store.Store, name string) (*store.Image, error) {
	opts := registryOptions(c)
	tr := newTransfer(c.App.ErrWriter, false)
	defer tr.close()
	opts.Progress = tr.d
	return registry.Ensure(c.Context, st, name, opts, func() {
		tr.say("Unable to find image '%s' locally", name)
	})
}

// promptLogin asks for what login lacks on the terminal that is stdin.
func promptLogin(w io.Writer, user string) (string, string, error) {
	in := bufio.NewReader(os.Stdin)
	if user == "" {
		fmt.Fprint(w, "Username: ")
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", "", err
		}
		if user = strings.TrimSpace(line); user == "" {
			return "", "", usagef("login: the username is empty")
		}
	}
	con, err := console.ConsoleFromFile(os.Stdin)
	if err != nil {
		return "", "", err
	}
	fmt.Fprint(w, "Password: ")
	if err := con.DisableEcho(); err != nil {
		return "", "", err
	}
	line, rerr := in.ReadString('\n')
	err = con.Reset()
	fmt.Fprintln(w)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return "", "", rerr
	}
	if err != nil {
		return "", "", err
	}
	password := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if password == "" {
		return "", "", usagef("login: the password is empty")
	}
	return user, password, nil
}
