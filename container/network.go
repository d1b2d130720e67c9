package container

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// Network modes. snap has no bridge: a container gets a network namespace
// of its own with only lo unless it shares the host's.
const (
	NetworkNone = "none" // the default ("" means it too)
	NetworkHost = "host"
)

// ErrNetwork is returned (wrapped) for a network mode snap does not have.
var ErrNetwork = errors.New("unknown network mode (snap has host and none)")

// ParseNetwork checks a network mode and returns it as Meta keeps it.
func ParseNetwork(mode string) (string, error) {
	switch mode {
	case "", NetworkNone:
		return "", nil
	case NetworkHost:
		return NetworkHost, nil
	}
	return "", fmt.Errorf("network %q: %w", mode, ErrNetwork)
}

// applyNetwork gives the container the network meta.Network names: host
// leaves it in the host's network namespace, none (the default) keeps the
// spec's new namespace, where libcontainer brings up lo.
func applyNetwork(spec *specs.Spec, meta *Meta, rootfs string) error {
	mode, err := ParseNetwork(meta.Network)
	if err != nil {
		return err
	}
	if mode == NetworkHost && spec.Linux != nil {
		spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
	}
	return nil
}

// defaultHostname is a container's hostname when none is given: docker
// gives a host-network container the host's name, any other its short ID.
func defaultHostname(network, id string) string {
	if network == NetworkHost {
		if h, err := os.Hostname(); err == nil {
			return h
		}
	}
	return id[:12]
}

// hostResolvConf and hostHosts are the host's files a host-network
// container gets a copy of, as docker's does.
const (
	hostResolvConf = "/etc/resolv.conf"
	hostHosts      = "/etc/hosts"
)

// networkFiles are the init layer's /etc/hosts, /etc/hostname and
// /etc/resolv.conf. With the host's network they are copies of the host's
// (what docker gives, and what provisioning needs to resolve names); in a
// namespace of its own docker's localhost-only hosts and the host's
// resolv.conf without its loopback nameservers, which the namespace cannot
// reach (docker's FilterResolvDNS).
func networkFiles(meta *Meta) (map[string]string, error) {
	mode, err := ParseNetwork(meta.Network)
	if err != nil {
		return nil, err
	}
	files := map[string]string{"etc/hostname": meta.Hostname + "\n"}
	resolv, err := readHostFile(hostResolvConf)
	if err != nil {
		return nil, err
	}
	if mode == NetworkHost {
		hosts, err := readHostFile(hostHosts)
		if err != nil {
			return nil, err
		}
		files["etc/hosts"], files["etc/resolv.conf"] = hosts, resolv
		return files, nil
	}
	files["etc/hosts"] = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	files["etc/resolv.conf"] = filterResolv(resolv)
	return files, nil
}

// readHostFile reads one of the host's network files; a missing one is
// empty, as docker takes it.
func readHostFile(name string) (string, error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("host %s: %w", name, err)
	}
	return string(b), nil
}

// filterResolv is libnetwork's FilterResolvDNS for a namespace without the
// host's loopback: nameservers on 127.0.0.0/8 or ::1 go, and when none is
// left Google's public ones take their place.
func filterResolv(conf string) string {
	var out []string
	servers := 0
	for _, line := range strings.SplitAfter(conf, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
				continue
			}
			servers++
		}
		out = append(out, line)
	}
	s := strings.Join(out, "")
	if servers == 0 {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
	}
	return s
}
