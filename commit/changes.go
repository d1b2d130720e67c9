package commit

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/docker/go-connections/nat"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/sys/signal"
)

// ApplyChanges applies `-c` lines to a config as `docker commit -c` does:
// each line is a Dockerfile instruction, parsed by BuildKit's parser (JSON
// and shell forms exactly as docker reads them). Only the instructions that
// change the config are allowed; the first bad line is named in the error.
func ApplyChanges(cfg *dockerspec.DockerOCIImageConfig, changes []string) error {
	cmdSet := false
	for _, line := range changes {
		if err := applyChange(cfg, line, &cmdSet); err != nil {
			return fmt.Errorf("change %q: %w", line, err)
		}
	}
	return nil
}

var defaultShell = []string{"/bin/sh", "-c"}

func cmdLine(c instructions.ShellDependantCmdLine, cfg *dockerspec.DockerOCIImageConfig) []string {
	if !c.PrependShell {
		return c.CmdLine
	}
	sh := defaultShell
	if len(cfg.Shell) > 0 {
		sh = cfg.Shell
	}
	return append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
}

func applyChange(cfg *dockerspec.DockerOCIImageConfig, line string, cmdSet *bool) error {
	res, err := parser.Parse(strings.NewReader(line))
	if err != nil {
		return err
	}
	if len(res.AST.Children) != 1 {
		return fmt.Errorf("want exactly one instruction")
	}
	node := res.AST.Children[0]
	switch strings.ToUpper(node.Value) {
	case "CMD", "ENTRYPOINT", "HEALTHCHECK", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR":
	default:
		return fmt.Errorf("%s is not allowed in a commit (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)", strings.ToUpper(node.Value))
	}
	inst, err := instructions.ParseCommand(node)
	if err != nil {
		return err
	}
	// Quotes and $VARIABLES are resolved against the config's own Env, as
	// docker's builder does for commit changes.
	if ex, ok := inst.(instructions.SupportsSingleWordExpansion); ok {
		lex := shell.NewLex(parser.DefaultEscapeToken)
		env := shell.EnvsFromSlice(cfg.Env)
		if err := ex.Expand(func(word string) (string, error) {
			w, _, err := lex.ProcessWord(word, env)
			return w, err
		}); err != nil {
			return err
		}
	}
	switch c := inst.(type) {
	case *instructions.CmdCommand:
		cfg.Cmd, *cmdSet = cmdLine(c.ShellDependantCmdLine, cfg), true
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = cmdLine(c.ShellDependantCmdLine, cfg)
		if !*cmdSet {
			cfg.Cmd = nil // docker: a new ENTRYPOINT drops the old CMD
		}
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			i := slices.IndexFunc(cfg.Env, func(e string) bool { return strings.SplitN(e, "=", 2)[0] == kv.Key })
			if i >= 0 {
				cfg.Env[i] = kv.Key + "=" + kv.Value
			} else {
				cfg.Env = append(cfg.Env, kv.Key+"="+kv.Value)
			}
		}
	case *instructions.ExposeCommand:
		// docker's builder: each word may expand to several ($PORTS="80
		// 443"), then go-connections' parser validates and expands ranges
		// (1-3 is 1/tcp, 2/tcp, 3/tcp) and lowercases the protocol.
		var words []string
		lex := shell.NewLex(parser.DefaultEscapeToken)
		for _, p := range c.Ports {
			ws, err := lex.ProcessWords(p, shell.EnvsFromSlice(cfg.Env))
			if err != nil {
				return err
			}
			words = append(words, ws...)
		}
		ports, _, err := nat.ParsePortSpecs(words)
		if err != nil {
			return err
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for p := range ports {
			cfg.ExposedPorts[string(p)] = struct{}{}
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
	case *instructions.StopSignalCommand:
		// Kept as written (SIGINT, INT and 2 all stay themselves), as docker does.
		if _, err := signal.ParseSignal(c.Signal); err != nil {
			return err
		}
		cfg.StopSignal = c.Signal
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return fmt.Errorf("VOLUME specified can not be an empty string")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.WorkdirCommand:
		if path.IsAbs(c.Path) || cfg.WorkingDir == "" {
			cfg.WorkingDir = path.Join("/", c.Path)
		} else {
			cfg.WorkingDir = path.Join(cfg.WorkingDir, c.Path)
		}
	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = c.Health
	default:
		return fmt.Errorf("unsupported instruction %T", inst)
	}
	return nil
}
