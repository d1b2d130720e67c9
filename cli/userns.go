package cli

import (
	"github.com/urfave/cli/v2"

	"snap/container"
)

// usernsFlags are run's and create's user namespace flags, podman's
// spelling: docker has only the daemon-wide --userns-remap, and its
// --userns=host, the default here.
func usernsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "userns", Usage: "`MODE`: host (the default) or auto (container root is an unprivileged host id, from a 65536-id range of its own)"},
		&cli.StringSliceFlag{Name: "uidmap", Usage: "map `CTR_ID:HOST_ID:SIZE` uids in a user namespace (repeatable)"},
		&cli.StringSliceFlag{Name: "gidmap", Usage: "map `CTR_ID:HOST_ID:SIZE` gids (default: as --uidmap)"},
	}
}

// usernsOptions reads them into o.
func usernsOptions(c *cli.Context, o *container.CreateOptions) error {
	uids, gids := c.StringSlice("uidmap"), c.StringSlice("gidmap")
	mode := c.String("userns")
	switch {
	case mode != "" && mode != "host" && mode != "auto":
		return usagef("--userns %q: want host or auto", mode)
	case mode != "" && len(uids)+len(gids) > 0:
		return usagef("--userns and --uidmap/--gidmap cannot be used together")
	case len(gids) > 0 && len(uids) == 0:
		return usagef("--gidmap needs --uidmap")
	}
	if mode == "auto" {
		o.Security.Userns = &container.Userns{Auto: true}
		return nil
	}
	if len(uids) == 0 {
		o.Security.Userns = nil
		return nil
	}
	u := &container.Userns{}
	for _, x := range []struct {
		flags []string
		to    *[]container.IDMap
	}{{uids, &u.UIDMap}, {gids, &u.GIDMap}} {
		for _, s := range x.flags {
			m, err := container.ParseIDMap(s)
			if err != nil {
				return usageError{err}
			}
			*x.to = append(*x.to, m)
		}
	}
	o.Security.Userns = u
	return nil
}
