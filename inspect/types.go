package inspect

import (
	"time"

	"snap/dockertypes"
)

// The views below are the Engine API 1.41 types that dockerd 20.10 answers
// `docker inspect` with: the same field names, order, JSON tags and Go types,
// so a template sees what it sees under docker (a port set prints
// map[8080/tcp:{}], a missing list prints []) and the JSON has docker's keys
// and zero values.

// Image is `docker image inspect`'s object.
type Image struct {
	ID              string `json:"Id"`
	RepoTags        []string
	RepoDigests     []string
	Parent          string
	Comment         string
	Created         string
	Container       string
	ContainerConfig *Config
	DockerVersion   string
	Author          string
	Config          *Config
	Architecture    string
	Variant         string `json:",omitempty"`
	Os              string
	OsVersion       string `json:",omitempty"`
	Size            int64
	VirtualSize     int64
	GraphDriver     GraphDriver
	RootFS          RootFS
	Metadata        ImageMetadata
	// Annotations are the manifest's (provenance: org.opencontainers.image.*),
	// shown as podman inspect shows them; docker's view has none, so the
	// key is there only when the manifest has some.
	Annotations map[string]string `json:",omitempty"`
}

// Config and the types below are docker's container.Config and its parts,
// shared with snap save (package dockertypes).
type (
	Config       = dockertypes.Config
	PortSet      = dockertypes.PortSet
	Port         = dockertypes.Port
	HealthConfig = dockertypes.HealthConfig
	StrSlice     = dockertypes.StrSlice
)

// GraphDriver names the storage driver and its directories.
type GraphDriver struct {
	Data map[string]string
	Name string
}

// RootFS lists an image's layers by diffID.
type RootFS struct {
	Type      string
	Layers    []string `json:",omitempty"`
	BaseLayer string   `json:",omitempty"`
}

// ImageMetadata is what the engine itself knows of an image.
type ImageMetadata struct {
	LastTagTime time.Time `json:",omitempty"`
}

// Container is `docker container inspect`'s object, with the fields that
// apply to snap's containers.
type Container struct {
	ID              string `json:"Id"`
	Created         string
	Path            string
	Args            []string
	State           *State
	Image           string
	ResolvConfPath  string
	HostnamePath    string
	HostsPath       string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	MountLabel      string
	ProcessLabel    string
	AppArmorProfile string
	ExecIDs         []string
	HostConfig      *HostConfig
	GraphDriver     GraphDriver
	Mounts          []MountPoint
	Config          *Config
	NetworkSettings *NetworkSettings
}

// Status is docker's word for a container's state.
type Status string

// The states docker reports that snap's containers can be in.
const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusPaused  Status = "paused"
	StatusExited  Status = "exited"
)

// State is a container's process state now.
type State struct {
	Status     Status
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
}

// HostConfig holds the host-side settings docker keeps that snap's
// containers have.
type HostConfig struct {
	Binds          []string
	NetworkMode    string
	PortBindings   map[Port][]PortBinding
	RestartPolicy  RestartPolicy
	AutoRemove     bool
	CapAdd         []string
	CapDrop        []string
	Privileged     bool
	ReadonlyRootfs bool
	SecurityOpt    []string
	Memory         int64
	NanoCpus       int64
	PidsLimit      *int64 // null: no limit
}

// PortBinding is a host address and port a container port is published on.
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

// RestartPolicy says what happens when the container exits.
type RestartPolicy struct {
	Name              string
	MaximumRetryCount int
}

// MountPoint is one mount in the container, as docker lists it.
type MountPoint struct {
	Type        string `json:",omitempty"`
	Name        string `json:",omitempty"`
	Source      string
	Destination string
	Driver      string `json:",omitempty"`
	Mode        string
	RW          bool
	Propagation string
}

// NetworkSettings is docker's network view. snap's containers get a network
// namespace of their own with only loopback, which is docker's "none"
// network: no addresses, no ports.
type NetworkSettings struct {
	Bridge                 string
	SandboxID              string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	Ports                  map[Port][]PortBinding
	SandboxKey             string
	SecondaryIPAddresses   []Address
	SecondaryIPv6Addresses []Address
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
	Networks               map[string]*EndpointSettings
}

// Address is an IP address and prefix length.
type Address struct {
	Addr      string
	PrefixLen int
}

// EndpointSettings is a container's place on one network.
type EndpointSettings struct {
	IPAMConfig          *EndpointIPAMConfig
	Links               []string
	Aliases             []string
	NetworkID           string
	EndpointID          string
	Gateway             string
	IPAddress           string
	IPPrefixLen         int
	IPv6Gateway         string
	GlobalIPv6Address   string
	GlobalIPv6PrefixLen int
	MacAddress          string
	DriverOpts          map[string]string
}

// EndpointIPAMConfig holds addresses asked for on a network.
type EndpointIPAMConfig struct {
	IPv4Address  string   `json:",omitempty"`
	IPv6Address  string   `json:",omitempty"`
	LinkLocalIPs []string `json:",omitempty"`
}
