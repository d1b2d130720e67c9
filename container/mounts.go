package container

import (
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// applyMounts adds the container's volumes to the spec.
func applyMounts(spec *specs.Spec, meta *Meta, rootfs string) error {
	for _, v := range meta.Volumes {
		parts := strings.Split(v, ":")
		opts := []string{"rbind", "rw"}
		if len(parts) == 3 && parts[2] == "ro" {
			opts = []string{"rbind", "ro"}
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: parts[1], Type: "bind", Source: parts[0], Options: opts})
	}
	return nil
}
