package registry

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// dockerHubKey is the key docker keeps Docker Hub's login under.
const dockerHubKey = "https://index.docker.io/v1/"

// credentialKey is the config key for registry, as docker names it.
func credentialKey(reg name.Registry) string {
	if reg.RegistryStr() == name.DefaultRegistry {
		return dockerHubKey
	}
	return reg.RegistryStr()
}

// parseRegistry reads a registry as docker login takes it: HOST[:PORT], an
// https:// URL of one, or "" for Docker Hub.
func parseRegistry(s string, opts Options) (name.Registry, error) {
	host := s
	for _, p := range []string{"https://", "http://"} {
		if len(host) > len(p) && host[:len(p)] == p {
			host = host[len(p):]
		}
	}
	if i := len(host) - 1; i > 0 && host[i] == '/' {
		host = host[:i]
	}
	if host == "" || host == "index.docker.io/v1" || host == "docker.io" {
		host = name.DefaultRegistry
	}
	var o []name.Option
	if insecureOK(host, opts) {
		o = append(o, name.Insecure)
	}
	reg, err := name.NewRegistry(host, append(o, name.StrictValidation)...)
	if err != nil {
		return name.Registry{}, fmt.Errorf("registry %q: %w: %v", s, ErrReference, err)
	}
	return reg, nil
}

// Login checks user and password against registry (HOST[:PORT]; "" is
// Docker Hub) and, when the registry takes them, saves them as docker does:
// in the credential helper or store docker's config names, else in
// ~/.docker/config.json (DOCKER_CONFIG). Refused credentials are
// ErrUnauthorized, and nothing is saved.
func Login(ctx context.Context, registry, user, password string, opts Options) error {
	reg, err := parseRegistry(registry, opts)
	if err != nil {
		return fmt.Errorf("login %s: %w", registry, err)
	}
	if err := checkLogin(ctx, reg, user, password, opts); err != nil {
		return fmt.Errorf("login %s: %w", reg.RegistryStr(), err)
	}
	cf, err := loadConfig()
	if err != nil {
		return fmt.Errorf("login %s: docker config: %w", reg.RegistryStr(), err)
	}
	key := credentialKey(reg)
	if err := cf.GetCredentialsStore(key).Store(types.AuthConfig{Username: user, Password: password, ServerAddress: key}); err != nil {
		return fmt.Errorf("login %s: saving the credentials: %w", reg.RegistryStr(), err)
	}
	return nil
}

// checkLogin asks the registry's /v2/ with the credentials: a bearer
// registry refuses them at the token exchange, a basic one at the request.
func checkLogin(ctx context.Context, reg name.Registry, user, password string, opts Options) error {
	tr, err := newTransport(reg.RegistryStr(), opts)
	if err != nil {
		return err
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	t, err := transport.NewWithContext(ctx, reg, auth, tr, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return classify(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", reg.Scheme(), reg.RegistryStr()), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return classify(err)
	}
	return nil
}

// Logout forgets registry's credentials, wherever docker keeps them. It
// reports whether there were any.
func Logout(registry string) (bool, error) {
	reg, err := parseRegistry(registry, Options{})
	if err != nil {
		return false, fmt.Errorf("logout %s: %w", registry, err)
	}
	cf, err := loadConfig()
	if err != nil {
		return false, fmt.Errorf("logout %s: docker config: %w", reg.RegistryStr(), err)
	}
	key := credentialKey(reg)
	store := cf.GetCredentialsStore(key)
	if ac, err := store.Get(key); err != nil || (ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.Auth == "") {
		return false, nil
	}
	if err := store.Erase(key); err != nil {
		return false, fmt.Errorf("logout %s: %w", reg.RegistryStr(), err)
	}
	return true, nil
}

// configDir is docker's config directory, read again on each call (the
// docker/cli package reads $DOCKER_CONFIG once per process).
func configDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	return config.Dir()
}
