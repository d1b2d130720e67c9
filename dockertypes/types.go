// Package dockertypes holds docker's own JSON shapes (Engine API 1.41, the
// types dockerd 20.10 writes) that more than one part of snap must write
// exactly as docker does: `snap inspect` shows them, and `snap save` writes
// them into each layer's legacy json. Field names, order, tags and Go types
// are docker's, so a template or a byte comparison sees what docker gives.
package dockertypes

import (
	"encoding/json"
	"time"
)

// Config is docker's container.Config: an image's config and a
// container's.
type Config struct {
	Hostname        string
	Domainname      string
	User            string
	AttachStdin     bool
	AttachStdout    bool
	AttachStderr    bool
	ExposedPorts    PortSet `json:",omitempty"`
	Tty             bool
	OpenStdin       bool
	StdinOnce       bool
	Env             []string
	Cmd             StrSlice
	Healthcheck     *HealthConfig `json:",omitempty"`
	ArgsEscaped     bool          `json:",omitempty"`
	Image           string
	Volumes         map[string]struct{}
	WorkingDir      string
	Entrypoint      StrSlice
	NetworkDisabled bool   `json:",omitempty"`
	MacAddress      string `json:",omitempty"`
	OnBuild         []string
	Labels          map[string]string
	StopSignal      string   `json:",omitempty"`
	StopTimeout     *int     `json:",omitempty"`
	Shell           StrSlice `json:",omitempty"`
}

// PortSet is docker's nat.PortSet: "PORT/PROTO" keys, empty values.
type PortSet map[Port]struct{}

// Port is "PORT/PROTO", as nat.Port.
type Port string

// HealthConfig is docker's HEALTHCHECK record.
type HealthConfig struct {
	Test        []string      `json:",omitempty"`
	Interval    time.Duration `json:",omitempty"`
	Timeout     time.Duration `json:",omitempty"`
	StartPeriod time.Duration `json:",omitempty"`
	Retries     int           `json:",omitempty"`
}

// StrSlice is docker's strslice.StrSlice: a JSON list, or one string read as
// a list of one, as image configs written by old tools hold.
type StrSlice []string

// UnmarshalJSON takes a list or a string.
func (s *StrSlice) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = StrSlice{one}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*s = list
	return nil
}
