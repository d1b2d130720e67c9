package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"snap/diff"
)

// checkCall runs before every command's action, after its flags are
// parsed: refuses empty names, then says once that root is needed, instead
// of failing deep inside a chown or a mount.
func checkCall(c *cli.Context) error {
	if err := checkNames(c); err != nil {
		return err
	}
	if why, ok := needsRoot(c); ok {
		if uid := os.Geteuid(); uid != 0 {
			return fmt.Errorf("%s: needs root%s (running as uid %d)", c.Command.Name, why, uid)
		}
	}
	return nil
}

// argNames names what each command's positional arguments are; the last
// name repeats (rmi IMAGE...). For run, create and exec only the arguments
// before the container's command are names.
var argNames = map[string][]string{
	"commit": {"container name", "image name"}, "diff": {"container name", "image name"},
	"history": {"image name"}, "inspect": {"image name"}, "rmi": {"image name"}, "save": {"image name"},
	"tag": {"image name", "new image name"}, "import": {"file name", "image name"},
	"run": {"image name"}, "create": {"image name"}, "exec": {"container name"},
	"start": {"container name"}, "stop": {"container name"}, "kill": {"container name"}, "rm": {"container name"},
	"pause": {"container name"}, "unpause": {"container name"}, "logs": {"container name"}, "mount": {"container name"},
	"wait": {"container name"},
}

func checkNames(c *cli.Context) error {
	names := argNames[c.Command.Name]
	if len(names) == 0 {
		return nil
	}
	args := c.Args().Slice()
	if n, ok := commandArgs[c.Command.Name]; ok && len(args) > n {
		args = args[:n]
	}
	for i, a := range args {
		if a == "" {
			return usagef("%s: the %s is empty", c.Command.Name, names[min(i, len(names)-1)])
		}
	}
	return nil
}

// needsRoot says whether the command, as called, needs root, and why when
// the reason is not the command itself. snap's own containers are
// libcontainer's (namespaces, mounts, cgroups); other runtimes' layers and
// unpacked base layers hold files owned by other users; overlayfs keeps its
// opaque markers in trusted.* xattrs that only root can read, so a
// non-root walk of an upper would miss them and write a wrong layer.
func needsRoot(c *cli.Context) (string, bool) {
	switch c.Command.Name {
	case "run", "create", "start", "exec", "stop", "kill", "rm", "pause", "unpause", "mount":
		return "", true
	case "layer":
		return upperNeedsRoot(c)
	case "commit", "diff":
		if c.Command.Name == "diff" && c.NArg() == 2 {
			return "", false // two images: the store's blobs only
		}
		if c.NArg() == 0 {
			return upperNeedsRoot(c)
		}
		arg := c.Args().First()
		switch {
		case strings.HasPrefix(arg, "dir://"):
			if c.String("base") != "" {
				return " to unpack --base's layers with their owners", true
			}
			return "", false
		case strings.HasPrefix(arg, "docker://"), strings.HasPrefix(arg, "runc://"), strings.HasPrefix(arg, "containerd://"), !strings.Contains(arg, "://"):
			return " to read a container's layer", true
		}
	}
	return "", false
}

func upperNeedsRoot(c *cli.Context) (string, bool) {
	if c.String("upper") == "" {
		return "", false
	}
	if f, err := diff.ParseFormat(c.String("upper-format")); err == nil && f != diff.FormatOverlay {
		return "", false
	}
	return " to read overlayfs' trusted.* xattrs in --upper", true
}
