package container

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// confined is the libcontainer configuration a container with s runs
// under.
func confined(t *testing.T, s Security) *configs.Config {
	t.Helper()
	cfg, err := (&Manager{}).config(&Meta{ID: "sec-test", Hostname: "h", Security: s}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mountOf(cfg *configs.Config, dest string) *configs.Mount {
	for _, m := range cfg.Mounts {
		if m.Destination == dest {
			return m
		}
	}
	return nil
}

// TestDefaultConfinementIsDockers: with no flags, the configuration holds
// docker's 14 capabilities for every set but the inheritable and ambient
// ones, its seccomp profile, masked and read-only paths, /proc and /sys
// mount flags and device rules; no-new-privileges is off, as in docker.
func TestDefaultConfinementIsDockers(t *testing.T) {
	cfg := confined(t, Security{})
	c := cfg.Capabilities
	if c == nil {
		t.Fatal("no capabilities set: the container gets every one")
	}
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(set, defaultCapabilities) {
			t.Errorf("%s: %v, want docker's %v", name, set, defaultCapabilities)
		}
	}
	if len(c.Inheritable) > 0 || len(c.Ambient) > 0 {
		t.Errorf("inheritable %v, ambient %v: docker sets none", c.Inheritable, c.Ambient)
	}
	if cfg.NoNewPrivileges {
		t.Error("no-new-privileges set: docker leaves it off by default")
	}
	if cfg.Seccomp == nil || len(cfg.Seccomp.Syscalls) < 100 {
		t.Fatalf("seccomp %v: want docker's default profile", cfg.Seccomp)
	}
	for _, sc := range cfg.Seccomp.Syscalls {
		if sc.Name == "unshare" || sc.Name == "mount" || sc.Name == "keyctl" {
			t.Errorf("the default profile allows %s without CAP_SYS_ADMIN", sc.Name)
		}
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/scsi", "/proc/acpi"} {
		if !slices.Contains(cfg.MaskPaths, p) {
			t.Errorf("%s is not masked", p)
		}
	}
	if !slices.Equal(cfg.ReadonlyPaths, []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) {
		t.Errorf("read-only paths %v", cfg.ReadonlyPaths)
	}
	for dest, flags := range map[string]int{
		"/proc":       unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV,
		"/sys":        unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV | unix.MS_RDONLY,
		"/dev/pts":    unix.MS_NOSUID | unix.MS_NOEXEC,
		"/dev/shm":    unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV,
		"/dev/mqueue": unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV,
	} {
		m := mountOf(cfg, dest)
		if m == nil || m.Flags&flags != flags {
			t.Errorf("%s mounted %+v, want flags %#x", dest, m, flags)
		}
	}
	if cfg.Readonlyfs {
		t.Error("the rootfs is read-only without --read-only")
	}
	// docker's rules come first: everything denied, then its allow-list.
	rules := cfg.Cgroups.Resources.Devices
	if len(rules) < 8 || rules[0].Allow || rules[0].Type != config.WildcardDevice {
		t.Fatalf("device rules %v: want deny-all first", rules)
	}
	for _, r := range rules {
		if r.Allow && r.Type == config.BlockDevice && strings.ContainsAny(string(r.Permissions), "rw") {
			t.Errorf("block devices readable or writable: %v", r)
		}
	}
	if !slices.ContainsFunc(rules, func(r *config.Rule) bool { return r.Allow && r.Major == 5 && r.Minor == 1 }) {
		t.Error("/dev/console (5:1) not allowed, as docker allows it")
	}
}

// TestSecurityFlags: each flag changes the configuration as docker's does.
func TestSecurityFlags(t *testing.T) {
	avail := availableCapabilities()
	tests := []struct {
		name  string
		s     Security
		check func(t *testing.T, cfg *configs.Config)
	}{
		{"privileged", Security{Privileged: true}, func(t *testing.T, cfg *configs.Config) {
			if !slices.Equal(cfg.Capabilities.Bounding, avail) || cfg.Seccomp != nil || cfg.MaskPaths != nil || cfg.ReadonlyPaths != nil {
				t.Errorf("caps %v, seccomp %v, masked %v, ro %v", cfg.Capabilities.Bounding, cfg.Seccomp, cfg.MaskPaths, cfg.ReadonlyPaths)
			}
			if m := mountOf(cfg, "/sys"); m.Flags&unix.MS_RDONLY != 0 {
				t.Error("/sys read-only")
			}
			if len(cfg.Devices) < 10 {
				t.Errorf("%d devices: want the host's", len(cfg.Devices))
			}
			if r := cfg.Cgroups.Resources.Devices; len(r) == 0 || !r[0].Allow || r[0].Type != config.WildcardDevice {
				t.Errorf("device rules %v: want all allowed", r)
			}
		}},
		{"cap-drop ALL, cap-add net_admin", Security{CapDrop: []string{"all"}, CapAdd: []string{"net_admin"}}, func(t *testing.T, cfg *configs.Config) {
			if !slices.Equal(cfg.Capabilities.Effective, []string{"CAP_NET_ADMIN"}) {
				t.Errorf("caps %v", cfg.Capabilities.Effective)
			}
		}},
		{"cap-add ALL, cap-drop CAP_MKNOD", Security{CapAdd: []string{"ALL"}, CapDrop: []string{"CAP_MKNOD"}}, func(t *testing.T, cfg *configs.Config) {
			want := slices.DeleteFunc(slices.Clone(avail), func(c string) bool { return c == "CAP_MKNOD" })
			if !slices.Equal(cfg.Capabilities.Effective, want) {
				t.Errorf("caps %v, want %v", cfg.Capabilities.Effective, want)
			}
		}},
		{"cap-add sys_admin opens unshare in the profile", Security{CapAdd: []string{"SYS_ADMIN"}}, func(t *testing.T, cfg *configs.Config) {
			if !slices.ContainsFunc(cfg.Seccomp.Syscalls, func(s *configs.Syscall) bool { return s.Name == "unshare" }) {
				t.Error("the profile ignores the added capability")
			}
		}},
		{"no-new-privileges", Security{NoNewPrivileges: true}, func(t *testing.T, cfg *configs.Config) {
			if !cfg.NoNewPrivileges {
				t.Error("off")
			}
		}},
		{"seccomp unconfined", Security{Seccomp: SeccompUnconfined}, func(t *testing.T, cfg *configs.Config) {
			if cfg.Seccomp != nil {
				t.Error("a filter is set")
			}
		}},
		{"read-only", Security{ReadOnly: true}, func(t *testing.T, cfg *configs.Config) {
			if !cfg.Readonlyfs || mountOf(cfg, "/dev/shm").Flags&unix.MS_RDONLY != 0 {
				t.Errorf("rootfs read-only %v, /dev/shm %+v", cfg.Readonlyfs, mountOf(cfg, "/dev/shm"))
			}
		}},
		{"limits", Security{PidsLimit: 10, Memory: 64 << 20, NanoCPUs: 1_500_000_000}, func(t *testing.T, cfg *configs.Config) {
			r := cfg.Cgroups.Resources
			if r.PidsLimit != 10 || r.Memory != 64<<20 || r.CpuQuota != 150000 || r.CpuPeriod != 100000 {
				t.Errorf("pids %d, memory %d, cpu %d/%d", r.PidsLimit, r.Memory, r.CpuQuota, r.CpuPeriod)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := tc.s.checked()
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, confined(t, s))
		})
	}
}

// TestSecurityChecked: Create refuses what docker refuses, with an error
// that names it, and stores capability names in one form.
func TestSecurityChecked(t *testing.T) {
	s, err := Security{CapAdd: []string{"net_admin", "CAP_SYS_TIME", "Net_Admin"}, CapDrop: []string{"all"}}.checked()
	if err != nil || !slices.Equal(s.CapAdd, []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}) || !slices.Equal(s.CapDrop, []string{"ALL"}) {
		t.Errorf("%v, %v", s, err)
	}
	tests := []struct {
		s    Security
		is   error
		name string
	}{
		{Security{CapAdd: []string{"NET_WIZARD"}}, ErrUnknownCapability, "NET_WIZARD"},
		{Security{CapDrop: []string{"cap_nope"}}, ErrUnknownCapability, "cap_nope"},
		{Security{Seccomp: `{"defaultAction": 3}`}, nil, "seccomp profile"},
		{Security{Seccomp: `{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}`}, nil, "seccomp profile"},
	}
	for _, tc := range tests {
		_, err := tc.s.checked()
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%+v: %v, want an error naming %s", tc.s, err, tc.name)
		}
	}
}
