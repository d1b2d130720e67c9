package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"snap/container"
	"snap/internal/fdpath"
)

// minMemory is the smallest --memory docker takes (6MB): below it a
// container cannot even start its init.
const minMemory = 6 * 1024 * 1024

// securityFlags are run's and create's security flags.
func securityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "privileged", Usage: "every capability and host device, no seccomp, no masked paths, /sys writable"},
		&cli.StringSliceFlag{Name: "cap-add", Usage: "add a capability (`CAP`: NET_ADMIN, cap_sys_time, ALL)"},
		&cli.StringSliceFlag{Name: "cap-drop", Usage: "drop a capability (`CAP`, or ALL)"},
		&cli.StringSliceFlag{Name: "security-opt", Usage: "`OPT`: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges[=true|false]"},
		&cli.BoolFlag{Name: "read-only", Usage: "mount the root filesystem read-only (volumes stay writable)"},
		&cli.Int64Flag{Name: "pids-limit", Usage: "at most `N` processes (-1: unlimited)"},
		&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "memory limit (`BYTES`: 512m, 1g)"},
		&cli.StringFlag{Name: "cpus", Usage: "CPU limit (`N`: 1.5)"},
	}
}

// securityOptions reads them into o. A seccomp profile is read here, at
// create time, as docker's client reads it: the container keeps its JSON.
func securityOptions(c *cli.Context, o *container.CreateOptions) error {
	s := &o.Security
	s.Privileged, s.ReadOnly = c.Bool("privileged"), c.Bool("read-only")
	var err error
	if s.CapAdd, err = container.NormalizeCapabilities(c.StringSlice("cap-add")); err != nil {
		return usageError{fmt.Errorf("--cap-add: %w", err)}
	}
	if s.CapDrop, err = container.NormalizeCapabilities(c.StringSlice("cap-drop")); err != nil {
		return usageError{fmt.Errorf("--cap-drop: %w", err)}
	}
	for _, opt := range c.StringSlice("security-opt") {
		if err := securityOpt(opt, s); err != nil {
			return err
		}
	}
	if n := c.Int64("pids-limit"); n > 0 {
		s.PidsLimit = n
	}
	if v := c.String("memory"); v != "" {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			return usagef("--memory %q: want a size such as 512m or 1g", v)
		}
		if n > 0 && n < minMemory {
			return usagef("--memory %q: the minimum is 6MB", v)
		}
		s.Memory = n
	}
	if v := c.String("cpus"); v != "" {
		n, err := nanoCPUs(v)
		if err != nil {
			return usageError{err}
		}
		s.NanoCPUs = n
	}
	return nil
}

// securityOpt reads one --security-opt as docker does: KEY=VALUE or the
// older KEY:VALUE; no-new-privileges alone means true.
func securityOpt(opt string, s *container.Security) error {
	k, v, ok := strings.Cut(opt, "=")
	if !ok && k != "no-new-privileges" {
		k, v, ok = strings.Cut(opt, ":")
	}
	switch k {
	case "no-new-privileges":
		if !ok {
			s.NoNewPrivileges = true
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return usagef("--security-opt %q: no-new-privileges takes true or false", opt)
		}
		s.NoNewPrivileges = b
		return nil
	case "seccomp":
		switch v {
		case "":
			return usagef("--security-opt %q: want seccomp=unconfined or seccomp=PROFILE.json", opt)
		case container.SeccompUnconfined:
			s.Seccomp = container.SeccompUnconfined
		case "builtin":
			s.Seccomp = "" // docker's name for its default profile
		default:
			b, err := readProfile(v)
			if err != nil {
				return fmt.Errorf("seccomp profile %s: %w", v, err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, b); err != nil {
				return fmt.Errorf("seccomp profile %s: %w", v, err)
			}
			s.Seccomp = compact.String()
		}
		return nil
	}
	return usagef("--security-opt %q: unknown option (snap takes seccomp=... and no-new-privileges)", opt)
}

// maxProfile bounds a seccomp profile: docker's default one is 25 KB.
const maxProfile = 4 << 20

// errNotProfile is returned (wrapped) for a profile path snap will not read.
var errNotProfile = errors.New("not a regular file of at most 4 MiB")

// readProfile reads a seccomp profile: a regular file, bounded.
func readProfile(name string) ([]byte, error) {
	b, err := fdpath.ReadRegular(name, maxProfile)
	if errors.Is(err, fdpath.ErrNotRegular) {
		return nil, errNotProfile
	}
	return b, err
}

// nanoCPUs parses --cpus exactly (1.5 is 1500000000), as docker does,
// within docker's range: 0.01 up to the CPUs this machine has.
func nanoCPUs(v string) (int64, error) {
	r, ok := new(big.Rat).SetString(v)
	if !ok {
		return 0, fmt.Errorf("--cpus %q: want a number of CPUs such as 1.5", v)
	}
	nano := r.Mul(r, big.NewRat(1e9, 1))
	if !nano.IsInt() {
		return 0, fmt.Errorf("--cpus %q: too precise (nanoCPUs at most)", v)
	}
	n := nano.Num()
	if n.Sign() == 0 {
		return 0, nil
	}
	if !n.IsInt64() || n.Int64() < 1e7 || n.Int64() > int64(runtime.NumCPU())*1e9 {
		return 0, fmt.Errorf("--cpus %q: the range is 0.01 to %d, the CPUs this machine has", v, runtime.NumCPU())
	}
	return n.Int64(), nil
}
