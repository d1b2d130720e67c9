package inspect

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/runc/libcontainer"

	"snap/container"
	"snap/store"
)

// zeroTime is how docker writes a time that has not happened.
var zeroTime = time.Time{}.Format(time.RFC3339Nano)

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// ContainerOf is docker's inspect view of one of snap's containers. The
// state is read from the runtime now; an image removed since the container
// was made leaves the fields that came from it empty.
func ContainerOf(st *store.Store, m *container.Manager, meta *container.Meta) (*Container, error) {
	state, err := stateOf(m, meta)
	if err != nil {
		return nil, err
	}
	var img configBlob
	var diffIDs []string
	if i, err := st.Lookup(meta.Image); err == nil {
		if err := json.Unmarshal(i.RawConfig, &img); err == nil {
			diffIDs = img.RootFS.DiffIDs
		}
	}
	if img.Config == nil {
		img.Config = &Config{}
	}
	cfg := containerConfig(meta, img.Config)
	network := container.NetworkNone
	if meta.Network == container.NetworkHost {
		network = container.NetworkHost
	}
	v := &Container{
		ID:      meta.ID,
		Created: formatTime(meta.Created),
		Args:    []string{},
		State:   state,
		Image:   meta.Image,
		// The runtime's files live in the init layer, below the upper: a
		// commit never takes them, as docker's bind mounts of them.
		ResolvConfPath: m.Init(meta.ID) + "/etc/resolv.conf",
		HostnamePath:   m.Init(meta.ID) + "/etc/hostname",
		HostsPath:      m.Init(meta.ID) + "/etc/hosts",
		LogPath:        m.Log(meta),
		Name:           "/" + meta.Name,
		Driver:         Driver,
		Platform:       "linux",
		HostConfig:     hostConfig(meta, network),
		GraphDriver:    GraphDriver{Name: Driver, Data: containerLayerData(st, m, meta, diffIDs)},
		Mounts:         mounts(meta),
		Config:         cfg,
		NetworkSettings: &NetworkSettings{
			Ports:    map[Port][]PortBinding{},
			Networks: map[string]*EndpointSettings{network: {}},
		},
	}
	if len(meta.Args) > 0 {
		v.Path, v.Args = meta.Args[0], slices.Clone(meta.Args[1:])
	}
	return v, nil
}

// hostConfig is docker's HostConfig of the container: its binds, network,
// --rm and confinement.
func hostConfig(meta *container.Meta, network string) *HostConfig {
	sec := meta.Security
	hc := &HostConfig{
		Binds:          binds(meta.Volumes),
		NetworkMode:    network,
		PortBindings:   map[Port][]PortBinding{},
		RestartPolicy:  RestartPolicy{Name: "no"},
		AutoRemove:     meta.Remove,
		CapAdd:         sec.CapAdd,
		CapDrop:        sec.CapDrop,
		Privileged:     sec.Privileged,
		ReadonlyRootfs: sec.ReadOnly,
		Memory:         sec.Memory,
		NanoCpus:       sec.NanoCPUs,
	}
	if sec.PidsLimit > 0 {
		hc.PidsLimit = &sec.PidsLimit
	}
	// The options as docker's client passes them on (a profile as its
	// JSON), and the daemon's label=disable for a privileged container.
	if sec.NoNewPrivileges {
		hc.SecurityOpt = append(hc.SecurityOpt, "no-new-privileges")
	}
	if sec.Seccomp != "" {
		hc.SecurityOpt = append(hc.SecurityOpt, "seccomp="+sec.Seccomp)
	}
	if sec.Privileged {
		hc.SecurityOpt = append(hc.SecurityOpt, "label=disable")
	}
	return hc
}

// stateOf reads the container's process state from libcontainer, and what
// snap recorded when it started and waited for it.
func stateOf(m *container.Manager, meta *container.Meta) (*State, error) {
	s := &State{Status: StatusCreated, StartedAt: zeroTime, FinishedAt: zeroTime}
	if !meta.Started.IsZero() {
		s.StartedAt = formatTime(meta.Started)
	}
	if !meta.Finished.IsZero() {
		s.FinishedAt = formatTime(meta.Finished)
	}
	exited := func() {
		s.Status = StatusExited
		if meta.ExitCode != nil {
			s.ExitCode = *meta.ExitCode
		}
	}
	if meta.ExitCode != nil || !meta.Started.IsZero() {
		exited()
	}
	c, err := libcontainer.Load(m.State, meta.ID)
	if err != nil {
		return s, nil // never started, or waited for and destroyed
	}
	status, err := c.Status()
	if err != nil {
		return nil, err
	}
	switch status {
	case libcontainer.Running, libcontainer.Paused:
		s.Status, s.Running, s.ExitCode = StatusRunning, true, 0
		if status == libcontainer.Paused {
			s.Status, s.Paused = StatusPaused, true
		}
		if ls, err := c.State(); err == nil {
			s.Pid = ls.InitProcessPid
			if meta.Started.IsZero() {
				s.StartedAt = formatTime(ls.Created)
			}
		}
	case libcontainer.Created:
		s.Status = StatusCreated
	case libcontainer.Stopped:
		exited()
	}
	return s, nil
}

// containerConfig is the container's config as docker keeps it: the image's
// config with the run's settings merged in, the entrypoint and command apart.
func containerConfig(meta *container.Meta, img *Config) *Config {
	cfg := &Config{
		Hostname:     meta.Hostname,
		User:         meta.User,
		ExposedPorts: img.ExposedPorts,
		Env:          runEnv(meta, img.Env),
		Cmd:          StrSlice(meta.Args),
		Healthcheck:  img.Healthcheck,
		Image:        meta.ImageRef,
		Volumes:      runVolumes(meta, img.Volumes),
		WorkingDir:   meta.Cwd,
		Labels:       img.Labels,
		StopSignal:   img.StopSignal,
		Tty:          meta.TTY,
		OpenStdin:    meta.Interactive,
		// docker's client attaches to a run that is not detached, and to
		// its stdin once, with -i.
		AttachStdin:  meta.Interactive && !meta.Detached,
		AttachStdout: !meta.Detached,
		AttachStderr: !meta.Detached,
		StdinOnce:    meta.Interactive && !meta.Detached,
	}
	// snap runs ENTRYPOINT + (the run's args or CMD) as one list.
	if ep := meta.Entrypoint; ep != nil { // the run's --entrypoint
		cfg.Entrypoint, cfg.Cmd = nil, nil // docker's null for none
		if len(*ep) > 0 {
			cfg.Entrypoint = StrSlice(*ep)
		}
		if len(meta.Args) > len(*ep) {
			cfg.Cmd = StrSlice(meta.Args[len(*ep):])
		}
	} else if ep := img.Entrypoint; len(ep) > 0 && len(meta.Args) >= len(ep) && slices.Equal(meta.Args[:len(ep)], ep) {
		cfg.Entrypoint, cfg.Cmd = ep, StrSlice(meta.Args[len(ep):])
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	// snap runs in / when neither the image nor the run names a directory;
	// docker leaves the field empty then.
	if img.WorkingDir == "" && meta.Cwd == "/" {
		cfg.WorkingDir = ""
	}
	return cfg
}

// runEnv is docker's Config.Env: the run's -e variables, then the image's
// that they do not set (docker's merge). A container's Env is that already;
// one made by an older snap has the image's first, then what the runtime
// added for the process (PATH when the image has none, HOSTNAME), which
// docker's config never holds.
func runEnv(meta *container.Meta, imageEnv []string) []string {
	user := meta.Env
	if len(user) >= len(imageEnv) && slices.Equal(user[:len(imageEnv)], imageEnv) {
		user = user[len(imageEnv):]
	}
	if len(user) > 0 && user[0] == container.DefaultPath && !slices.ContainsFunc(imageEnv, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		user = user[1:]
	}
	if len(user) > 0 && user[0] == "HOSTNAME="+meta.Hostname {
		user = user[1:]
	}
	out := slices.Clone(user)
	for _, e := range imageEnv {
		name, _, _ := strings.Cut(e, "=")
		if !slices.ContainsFunc(user, func(u string) bool { n, _, _ := strings.Cut(u, "="); return n == name }) {
			out = append(out, e)
		}
	}
	return out
}

// mounts lists the container's binds (HOST:CTR[:ro]), then its anonymous
// volumes, as docker does.
func mounts(meta *container.Meta) []MountPoint {
	out := []MountPoint{}
	for _, v := range meta.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		mp := MountPoint{Type: "bind", Source: parts[0], Destination: parts[1], RW: true, Propagation: "rprivate"}
		if len(parts) == 3 {
			mp.Mode, mp.RW = parts[2], parts[2] != "ro"
		}
		out = append(out, mp)
	}
	for _, av := range meta.AnonVolumes {
		out = append(out, MountPoint{Type: "volume", Name: av.Name, Source: av.Source, Destination: av.Dest, Driver: "local", RW: true})
	}
	return out
}

// binds is docker's HostConfig.Binds: the -v that name a host path; a -v
// CTR is a volume, in Config.Volumes.
func binds(volumes []string) []string {
	var out []string
	for _, v := range volumes {
		if strings.Contains(v, ":") {
			out = append(out, v)
		}
	}
	return out
}

// runVolumes is docker's container Config.Volumes: the image's, and each
// -v CTR as given.
func runVolumes(meta *container.Meta, image map[string]struct{}) map[string]struct{} {
	anon := slices.DeleteFunc(slices.Clone(meta.Volumes), func(v string) bool { return strings.Contains(v, ":") })
	if len(anon) == 0 {
		return image
	}
	out := maps.Clone(image)
	if out == nil {
		out = map[string]struct{}{}
	}
	for _, v := range anon {
		out[v] = struct{}{}
	}
	return out
}

// containerLayerData is GraphDriver.Data of a container: its upper, work
// and merged dirs, and its lowers (the init layer, then the image's layers,
// top-most first), as the overlay is mounted.
func containerLayerData(st *store.Store, m *container.Manager, meta *container.Meta, diffIDs []string) map[string]string {
	lowers := []string{m.Init(meta.ID)}
	for i := len(diffIDs) - 1; i >= 0; i-- {
		d := digest.Digest(diffIDs[i])
		if d.Validate() != nil {
			break
		}
		lowers = append(lowers, st.LayerPath(d))
	}
	return map[string]string{
		"LowerDir":  strings.Join(lowers, ":"),
		"UpperDir":  m.Upper(meta.ID),
		"WorkDir":   m.Work(meta.ID),
		"MergedDir": m.Rootfs(meta.ID),
	}
}
