package container

import (
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Security is how a container is confined. Its zero value is docker's
// default confinement; each field is the docker run flag of the same name.
type Security struct {
	Privileged      bool     `json:",omitempty"`
	CapAdd          []string `json:",omitempty"`
	CapDrop         []string `json:",omitempty"`
	Seccomp         string   `json:",omitempty"` // "": docker's default profile; "unconfined"; or a profile's JSON
	NoNewPrivileges bool     `json:",omitempty"`
	ReadOnly        bool     `json:",omitempty"` // the rootfs is mounted read-only
	PidsLimit       int64    `json:",omitempty"`
	Memory          int64    `json:",omitempty"` // bytes
	NanoCPUs        int64    `json:",omitempty"` // 1e9 is one CPU
	Userns          *Userns  `json:",omitempty"` // nil: the host's user namespace
}

// config is the libcontainer configuration of the container's run on
// rootfs: the spec, then each aspect applied in its own step.
func (m *Manager) config(meta *Meta, rootfs string) (*configs.Config, error) {
	spec := specconv.Example()
	spec.Root = &specs.Root{Path: rootfs}
	spec.Hostname = meta.Hostname
	spec.Process = nil
	for _, apply := range []func(*specs.Spec, *Meta, string) error{applyMounts, applyNetwork, applySecurity, applyUserns} {
		if err := apply(spec, meta, rootfs); err != nil {
			return nil, err
		}
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: meta.ID, Spec: spec, NoNewKeyring: true})
	if err != nil {
		return nil, err
	}
	return cfg, nil
}
