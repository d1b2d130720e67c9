package cli

import (
	"github.com/urfave/cli/v2"

	"snap/container"
)

// securityFlags are run's and create's security flags.
func securityFlags() []cli.Flag { return nil }

// securityOptions reads them into o.
func securityOptions(c *cli.Context, o *container.CreateOptions) error { return nil }
