package inspect

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"snap/store"
)

// Driver is the storage driver name snap reports: its rootfs is an overlay
// mount of plain layer directories, as docker's overlay2 is.
const Driver = "overlay"

// configBlob is an image config read as dockerd reads it (image.V1Image):
// docker's own keys beside the OCI ones, and the runtime config decoded as
// docker's container.Config.
type configBlob struct {
	Comment         string    `json:"comment"`
	Created         time.Time `json:"created"`
	Container       string    `json:"container"`
	ContainerConfig Config    `json:"container_config"`
	DockerVersion   string    `json:"docker_version"`
	Author          string    `json:"author"`
	Config          *Config   `json:"config"`
	Architecture    string    `json:"architecture"`
	Variant         string    `json:"variant"`
	OS              string    `json:"os"`
	OSVersion       string    `json:"os.version"`
	RootFS          struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		Comment string `json:"comment"`
	} `json:"history"`
}

// ImageOf is docker's inspect view of a stored image.
func ImageOf(st *store.Store, img *store.Image) (*Image, error) {
	var c configBlob
	if err := json.Unmarshal(img.RawConfig, &c); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", img.ID, err)
	}
	// dockerd: the config's own comment, else the last history entry's (where
	// docker commit -m puts it).
	comment := c.Comment
	if comment == "" && len(c.History) > 0 {
		comment = c.History[len(c.History)-1].Comment
	}
	if c.Config == nil {
		// dockerd prints null for a config without one; its keys with zero
		// values say the same and keep every template working.
		c.Config = &Config{}
	}
	os := c.OS
	if os == "" {
		os = runtime.GOOS
	}
	size, err := Size(img)
	if err != nil {
		return nil, err
	}
	v := &Image{
		ID:              img.ID.String(),
		RepoTags:        nonNil(img.Tags),
		RepoDigests:     []string{},
		Comment:         comment,
		Created:         c.Created.Format(time.RFC3339Nano),
		Container:       c.Container,
		ContainerConfig: &c.ContainerConfig,
		DockerVersion:   c.DockerVersion,
		Author:          c.Author,
		Config:          c.Config,
		Architecture:    c.Architecture,
		Variant:         c.Variant,
		Os:              os,
		OsVersion:       c.OSVersion,
		Size:            size,
		VirtualSize:     size,
		GraphDriver:     GraphDriver{Name: Driver, Data: layerData(st, c.RootFS.DiffIDs)},
		RootFS:          RootFS{Type: c.RootFS.Type, Layers: c.RootFS.DiffIDs},
		Annotations:     img.Manifest.Annotations,
		// Metadata.LastTagTime stays zero: snap keeps no time of tag moves
		// (docker load leaves it zero too).
	}
	return v, nil
}

// Size is what docker reports as an image's size: the bytes of its layers'
// files, as recorded when each layer was written.
func Size(img *store.Image) (int64, error) {
	var n int64
	for _, l := range img.Manifest.Layers {
		s, ok := l.Annotations[store.AnnotationContentSize]
		if !ok {
			continue // written by another tool: unknown, as docker history shows 0B
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("image %s: layer %s size %q: %w", img.ID, l.Digest, s, err)
		}
		n += v
	}
	return n, nil
}

// layerData is docker's image GraphDriver.Data for overlay: the top layer's
// directory as UpperDir and the ones below, top-most first, as LowerDir.
// snap unpacks a layer the first time a container or a commit needs it, so
// these are where the layers are or will be.
func layerData(st *store.Store, diffIDs []string) map[string]string {
	var dirs []string
	for i := len(diffIDs) - 1; i >= 0; i-- {
		d := digest.Digest(diffIDs[i])
		if d.Validate() != nil {
			return map[string]string{} // never a path from an unchecked digest
		}
		dirs = append(dirs, st.LayerPath(d))
	}
	data := map[string]string{}
	if len(dirs) > 0 {
		data["UpperDir"] = dirs[0]
	}
	if len(dirs) > 1 {
		data["LowerDir"] = strings.Join(dirs[1:], ":")
	}
	return data
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
