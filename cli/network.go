package cli

import (
	"github.com/urfave/cli/v2"

	"snap/container"
)

// networkFlags are run's and create's network flags.
func networkFlags() []cli.Flag { return nil }

// networkOptions reads them into o.
func networkOptions(c *cli.Context, o *container.CreateOptions) error { return nil }
