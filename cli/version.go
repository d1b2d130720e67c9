package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// Set by make build: -ldflags "-X snap/cli.version=$(git describe --always
// --dirty) -X snap/cli.gitCommit=$(git rev-parse HEAD)". A plain go build
// leaves them empty and BuildVersion reads what the go command stamped.
var version, gitCommit string

// Version is what snap version prints.
type Version struct {
	Version      string // git describe of the build, or the module's version
	Commit       string // the full commit hash, "-dirty" when the tree had changes
	Go           string
	Libcontainer string // the runc module's version
	OSArch       string
	Seccomp      bool // built with cgo and the seccomp tag: containers can get docker's profile
}

// BuildVersion reads the version the binary was built with.
func BuildVersion() Version {
	v := Version{Version: version, Commit: gitCommit, Go: runtime.Version(), OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v.orUnknown()
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/opencontainers/runc" {
			v.Libcontainer = d.Version
			if d.Replace != nil {
				v.Libcontainer = d.Replace.Version
			}
		}
	}
	var rev string
	var dirty, cgo bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		case "CGO_ENABLED":
			cgo = s.Value == "1"
		case "-tags":
			for t := range strings.SplitSeq(s.Value, ",") {
				if t == "seccomp" {
					v.Seccomp = true
				}
			}
		}
	}
	v.Seccomp = v.Seccomp && cgo
	if v.Commit == "" && rev != "" {
		v.Commit = rev
		if dirty {
			v.Commit += "-dirty"
		}
	}
	if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version
	}
	if v.Version == "" && rev != "" {
		// What git describe --always --dirty gives a tree with no tags.
		v.Version = rev[:min(7, len(rev))]
		if dirty {
			v.Version += "-dirty"
		}
	}
	return v.orUnknown()
}

func (v Version) orUnknown() Version {
	for _, p := range []*string{&v.Version, &v.Commit, &v.Libcontainer} {
		if *p == "" {
			*p = "unknown"
		}
	}
	return v
}

// Short is the one line of snap --version, as docker --version's.
func (v Version) Short() string {
	return fmt.Sprintf("snap version %s, commit %s, %s, libcontainer %s", v.Version, v.Commit, v.Go, v.Libcontainer)
}

// WriteTo prints the version as podman version does, one field a line.
func (v Version) WriteTo(w io.Writer) (int64, error) {
	seccomp := "no (containers cannot get docker's default profile)"
	if v.Seccomp {
		seccomp = "yes"
	}
	n, err := fmt.Fprintf(w, "Version:       %s\nGit commit:    %s\nGo version:    %s\nlibcontainer:  %s\nOS/Arch:       %s\nSeccomp:       %s\n",
		v.Version, v.Commit, v.Go, v.Libcontainer, v.OSArch, seccomp)
	return int64(n), err
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:      "version",
		Usage:     "show the version, commit, Go and libcontainer versions",
		UsageText: "snap version",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("version takes no arguments")
			}
			_, err := BuildVersion().WriteTo(c.App.Writer)
			return err
		},
	}
}
