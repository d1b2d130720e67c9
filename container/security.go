package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/devices"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// SeccompUnconfined is the Security.Seccomp value that runs a container
// without a seccomp filter (docker's seccomp=unconfined).
const SeccompUnconfined = "unconfined"

var (
	// ErrUnknownCapability is returned (wrapped) for a capability name the
	// kernel headers snap was built with do not know.
	ErrUnknownCapability = errors.New("unknown capability")
	// ErrCapabilityUnavailable is returned (wrapped) for a capability snap
	// itself lacks, so it cannot give it to a container.
	ErrCapabilityUnavailable = errors.New("capability not available here (not in snap's bounding set)")
	// ErrNoSeccomp is returned (wrapped) when a container should run under
	// a seccomp profile but this snap cannot apply one: rather than run the
	// container unconfined, it does not run it.
	ErrNoSeccomp = errors.New("this snap was built without seccomp support (it needs cgo and the seccomp build tag)")
)

// defaultCapabilities are the capabilities docker gives a container
// (moby's caps.DefaultCapabilities), CapEff 00000000a80425fb.
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// maskedPaths are hidden from the container (moby's oci.DefaultLinuxSpec):
// they leak host state or give ways to harm it.
var maskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/sys/devices/virtual/powercap",
	"/sys/firmware",
}

// readonlyPaths are visible but read-only, as in docker.
var readonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// systemMounts are docker's options for the filesystems every container
// gets, by destination.
var systemMounts = map[string][]string{
	"/proc":          {"nosuid", "noexec", "nodev"},
	"/dev":           {"nosuid", "strictatime", "mode=755", "size=65536k"},
	"/dev/pts":       {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
	"/sys":           {"nosuid", "noexec", "nodev", "ro"},
	"/sys/fs/cgroup": {"ro", "nosuid", "noexec", "nodev"},
	"/dev/mqueue":    {"nosuid", "noexec", "nodev"},
	"/dev/shm":       {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"},
}

func i64(v int64) *int64 { return &v }

// defaultDeviceRules are docker's device cgroup rules: every device denied
// but the few a process expects (null, zero, full, random, urandom, tty,
// console, ptmx), fuse denied explicitly. libcontainer adds its own
// allow-list after them (mknod of any node, /dev/pts, /dev/net/tun), as it
// does for docker.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	allow := func(major, minor int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(major), Minor: i64(minor), Access: "rwm"}
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		allow(1, 5), allow(1, 3), allow(1, 9), allow(1, 8), allow(5, 0), allow(5, 1),
		{Allow: false, Type: "c", Major: i64(10), Minor: i64(229), Access: "rwm"},
	}
}

// knownCapabilities maps each capability name ("CAP_SYS_ADMIN") this build
// knows to its number.
func knownCapabilities() map[string]capability.Cap {
	known := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = c
	}
	return known
}

// availableCapabilities are the capabilities snap can give: those in its
// own bounding set, in number order. A privileged container gets them all,
// as a privileged docker container gets those of dockerd.
func availableCapabilities() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		if ok, err := capability.GetBound(c); err == nil && ok {
			out = append(out, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return out
}

// NormalizeCapabilities returns names as docker takes them (case-insensitive,
// with or without CAP_, or ALL) in their canonical form: CAP_NET_ADMIN, ALL.
func NormalizeCapabilities(names []string) ([]string, error) {
	known := knownCapabilities()
	var out []string
	for _, n := range names {
		c := strings.ToUpper(strings.TrimSpace(n))
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if _, ok := known[c]; !ok && c != "ALL" {
			return nil, fmt.Errorf("%w: %q", ErrUnknownCapability, n)
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// capabilities is the container's capability set, as moby's
// TweakCapabilities makes it: all of them when privileged; else docker's
// defaults less CapDrop plus CapAdd, where ALL in CapAdd starts from every
// capability and ALL in CapDrop from none.
func (s Security) capabilities() ([]string, error) {
	avail := availableCapabilities()
	if s.Privileged {
		return avail, nil
	}
	drop, err := NormalizeCapabilities(s.CapDrop)
	if err != nil {
		return nil, err
	}
	add, err := NormalizeCapabilities(s.CapAdd)
	if err != nil {
		return nil, err
	}
	var base []string
	switch {
	case slices.Contains(add, "ALL"):
		base = avail
	case slices.Contains(drop, "ALL"):
	default:
		base = defaultCapabilities
	}
	var out []string
	for _, c := range base {
		if !slices.Contains(drop, c) {
			out = append(out, c)
		}
	}
	for _, c := range add {
		if c == "ALL" || slices.Contains(out, c) {
			continue
		}
		if !slices.Contains(avail, c) {
			return nil, fmt.Errorf("%s: %w", c, ErrCapabilityUnavailable)
		}
		out = append(out, c)
	}
	return out, nil
}

// checked is s validated and in canonical form, as Create stores it: the
// capability names normalized, a seccomp profile parsed.
func (s Security) checked() (Security, error) {
	var err error
	if s.CapAdd, err = NormalizeCapabilities(s.CapAdd); err != nil {
		return s, err
	}
	if s.CapDrop, err = NormalizeCapabilities(s.CapDrop); err != nil {
		return s, err
	}
	caps, err := s.capabilities()
	if err != nil {
		return s, err
	}
	if s.Seccomp != "" && s.Seccomp != SeccompUnconfined {
		spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
		if _, err := seccomp.LoadProfile(s.Seccomp, spec); err != nil {
			return s, fmt.Errorf("seccomp profile: %w", err)
		}
	}
	if s.PidsLimit < 0 {
		s.PidsLimit = 0 // docker's -1: no limit
	}
	if s.Memory < 0 || s.NanoCPUs < 0 {
		return s, errors.New("memory and CPU limits cannot be negative")
	}
	return s, nil
}

// applySecurity confines the container as meta.Security says, the way
// docker does (moby's oci.DefaultLinuxSpec and the daemon's WithCapabilities,
// WithMounts, WithDevices, WithResources, WithSysctls and WithSeccomp).
func applySecurity(spec *specs.Spec, meta *Meta, rootfs string) error {
	s := meta.Security
	caps, err := s.capabilities()
	if err != nil {
		return err
	}
	if spec.Process == nil {
		spec.Process = &specs.Process{}
	}
	// Inheritable and ambient stay empty, as docker has them since 20.10.14.
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	spec.Process.NoNewPrivileges = s.NoNewPrivileges
	spec.Root.Readonly = s.ReadOnly
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	applySystemMounts(spec, s)
	if s.Privileged {
		spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = nil, nil
	} else {
		spec.Linux.MaskedPaths = append(slices.Clone(maskedPaths), thermalThrottlePaths()...)
		spec.Linux.ReadonlyPaths = slices.Clone(readonlyPaths)
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	if err := applyDevices(spec, s); err != nil {
		return err
	}
	applyResources(spec.Linux.Resources, s)
	applySysctls(spec, s.Userns)
	return applySeccomp(spec, s)
}

// thermalThrottlePaths are the per-CPU thermal_throttle directories moby
// also masks (their counters leak the host's load).
func thermalThrottlePaths() []string {
	found, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")
	return found
}

// applySystemMounts gives /proc, /sys, /dev and the rest docker's mount
// options. A read-only rootfs makes them read-only too, except those a
// process must write (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue);
// privileged, /sys (when the rootfs is writable) and the cgroup
// filesystem are writable. Bind mounts (volumes) are left as they are.
func applySystemMounts(spec *specs.Spec, s Security) {
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		opts, ok := systemMounts[m.Destination]
		if !ok || m.Type == "bind" {
			continue
		}
		m.Options = slices.Clone(opts)
		switch m.Destination {
		case "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue":
			continue
		}
		if s.ReadOnly && !slices.Contains(m.Options, "ro") {
			m.Options = append(m.Options, "ro")
		}
		if s.Privileged && (m.Type == "cgroup" || (m.Destination == "/sys" && !s.ReadOnly)) {
			m.Options = slices.DeleteFunc(m.Options, func(o string) bool { return o == "ro" })
		}
	}
}

// applyDevices sets docker's device allow-list; privileged, the container
// gets every host device and may use any.
func applyDevices(spec *specs.Spec, s Security) error {
	if !s.Privileged {
		spec.Linux.Resources.Devices = defaultDeviceRules()
		return nil
	}
	host, err := devices.HostDevices()
	if err != nil {
		return fmt.Errorf("host devices: %w", err)
	}
	spec.Linux.Devices = nil
	for _, d := range host {
		mode, uid, gid := d.FileMode, d.Uid, d.Gid
		spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{
			Path: d.Path, Type: string(d.Type), Major: d.Major, Minor: d.Minor, FileMode: &mode, UID: &uid, GID: &gid,
		})
	}
	spec.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	return nil
}

// cpuPeriod is the CFS period docker sets with --cpus (100ms, in µs).
const cpuPeriod = 100000

// applyResources sets the cgroup limits; libcontainer writes them to the
// v1 controllers or the v2 files, whichever the host has.
func applyResources(r *specs.LinuxResources, s Security) {
	if s.Memory > 0 {
		r.Memory = &specs.LinuxMemory{Limit: i64(s.Memory)}
		// docker's default swap allowance: as much again, where the
		// kernel accounts swap.
		if swapAccounted() {
			r.Memory.Swap = i64(2 * s.Memory)
		}
	}
	if s.NanoCPUs > 0 {
		period := uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: i64(s.NanoCPUs * cpuPeriod / 1e9)}
	}
	if s.PidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: s.PidsLimit}
	}
}

// swapAccounted reports whether the memory controller limits swap.
func swapAccounted() bool {
	if cgroups.IsCgroup2UnifiedMode() {
		found, _ := filepath.Glob("/sys/fs/cgroup/*/memory.swap.max")
		return len(found) > 0
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// applySysctls sets the two sysctls docker sets in a container's own
// network namespace: binding low ports and ping need no capability there.
// In a user namespace the kernel takes only a ping range of mapped groups.
func applySysctls(spec *specs.Spec, userns *Userns) {
	private := slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.NetworkNamespace && ns.Path == ""
	})
	if !private {
		return
	}
	ping := "0 2147483647"
	if userns != nil {
		ping = ""
		for _, m := range userns.GIDMap {
			if m.ContainerID == 0 && m.Size > 0 {
				ping = fmt.Sprintf("0 %d", m.Size-1)
			}
		}
	}
	for k, v := range map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "0",
		"net.ipv4.ping_group_range":           ping,
	} {
		if v == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))); err != nil {
			continue // an older kernel: runc would refuse it
		}
		if spec.Linux.Sysctl == nil {
			spec.Linux.Sysctl = map[string]string{}
		}
		if _, set := spec.Linux.Sysctl[k]; !set {
			spec.Linux.Sysctl[k] = v
		}
	}
}

// applySeccomp sets the seccomp filter: docker's default profile for the
// container's capabilities, a profile of the user's, or none (unconfined,
// or privileged, as docker).
func applySeccomp(spec *specs.Spec, s Security) error {
	var err error
	switch {
	case s.Privileged || s.Seccomp == SeccompUnconfined:
		spec.Linux.Seccomp = nil
		return nil
	case s.Seccomp == "":
		spec.Linux.Seccomp, err = seccomp.GetDefaultProfile(spec)
	default:
		spec.Linux.Seccomp, err = seccomp.LoadProfile(s.Seccomp, spec)
	}
	if err != nil {
		return fmt.Errorf("seccomp profile: %w", err)
	}
	if spec.Linux.Seccomp != nil && !seccompBuiltIn {
		return ErrNoSeccomp
	}
	return nil
}
