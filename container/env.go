package container

import (
	"slices"
	"strings"
)

// DefaultPath is the PATH a process gets when its env sets none, docker's.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// containerEnv is docker's Config.Env of a new container: the run's -e
// variables, then the image's that they do not set. It is what a commit
// records, so it holds nothing the runtime adds for the process (PATH when
// the image has none, HOSTNAME): those are processEnv's.
func containerEnv(image, run []string) []string {
	out := slices.Clone(run)
	for _, e := range image {
		if !slices.ContainsFunc(run, func(r string) bool { return envKey(r) == envKey(e) }) {
			out = append(out, e)
		}
	}
	return out
}

// processEnv is the env a container's process starts with: docker's
// CreateDaemonEnvironment (a default PATH, HOSTNAME) overridden by the
// container's own env, then by extra (exec's -e).
func processEnv(meta *Meta, extra ...[]string) []string {
	env := []string{DefaultPath, "HOSTNAME=" + meta.Hostname}
	env = replaceOrAppend(env, meta.Env)
	for _, e := range extra {
		env = replaceOrAppend(env, e)
	}
	return env
}

// replaceOrAppend is moby's ReplaceOrAppendEnvValues: each of override
// replaces the variable of the same name in defaults or is appended; a bare
// NAME (no "=") removes it.
func replaceOrAppend(defaults, override []string) []string {
	out := slices.Clone(defaults)
	for _, o := range override {
		i := slices.IndexFunc(out, func(d string) bool { return envKey(d) == envKey(o) })
		switch {
		case !strings.Contains(o, "="):
			if i >= 0 {
				out = slices.Delete(out, i, i+1)
			}
		case i >= 0:
			out[i] = o
		default:
			out = append(out, o)
		}
	}
	return out
}

func envKey(e string) string {
	k, _, _ := strings.Cut(e, "=")
	return k
}
