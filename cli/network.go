package cli

import (
	"github.com/urfave/cli/v2"

	"snap/container"
)

// networkFlags are run's and create's network flags.
func networkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "network", Aliases: []string{"net"}, Value: container.NetworkNone,
			Usage: "`MODE`: none (a network namespace with only lo) or host (the host's network, resolv.conf and hosts)"},
	}
}

// networkOptions reads them into o.
func networkOptions(c *cli.Context, o *container.CreateOptions) error {
	mode, err := container.ParseNetwork(c.String("network"))
	if err != nil {
		return usageError{err}
	}
	o.Network = mode
	return nil
}
