package cli

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"snap/internal/fixtures"
	"snap/internal/testenv"
)

// requireRoot: why says what the test does that needs root.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	testenv.Root(t, why)
}

var errAsked = errors.New("asked")

// requireRootFor needs root when snap, called with args, would refuse to
// run without it. The command line answers itself (checkCall's checks, on
// the flags as parsed), so the tests and the refusal cannot disagree.
func requireRootFor(t *testing.T, args ...string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	app := App(io.Discard, io.Discard)
	name, why, root := "", "", false
	for _, c := range app.Commands {
		c.Before = func(c *cli.Context) error {
			// As checkCall: a call refused for its names never gets to root.
			if checkNames(c) == nil {
				name = c.Command.Name
				why, root = needsRoot(c)
			}
			return errAsked
		}
	}
	runApp(context.Background(), app, append([]string{"snap"}, args...))
	if root {
		if why != "" {
			why = " (" + strings.TrimPrefix(why, " ") + ")"
		}
		requireRoot(t, "snap "+name+why)
	}
}

// requireDocker: a running dockerd with the busybox base image.
func requireDocker(t *testing.T) {
	t.Helper()
	err := fixtures.DockerAvailable()
	if err == nil {
		err = fixtures.EnsureBaseImage()
	}
	testenv.NeedNoError(t, err, "a running dockerd")
}
