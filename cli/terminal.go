package cli

import (
	"github.com/urfave/cli/v2"

	"snap/container"
)

// terminalFlags are run's and create's terminal flags.
func terminalFlags() []cli.Flag { return nil }

// terminalOptions reads them into o.
func terminalOptions(c *cli.Context, o *container.CreateOptions) error { return nil }
