package registry

import (
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"
)

// ErrCredentialHelper is returned (wrapped) when docker's config names a
// credential helper that is not a plain name.
var ErrCredentialHelper = errors.New("credential helper is not a name")

// helperName is what a credential helper may be called: docker runs
// docker-credential-NAME, which exec looks up on PATH only when NAME holds
// no '/'; with one (credHelpers {"host": "x/../../bin/sh"}) it runs a path
// from the working directory, and docker/cli does not check.
var helperName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// checkHelpers refuses a config whose credsStore or credHelpers name a path.
func checkHelpers(cf *configfile.ConfigFile) error {
	if cf.CredentialsStore != "" && !helperName.MatchString(cf.CredentialsStore) {
		return fmt.Errorf("docker config %s: credsStore %q: %w", cf.Filename, cf.CredentialsStore, ErrCredentialHelper)
	}
	hosts := make([]string, 0, len(cf.CredentialHelpers))
	for h := range cf.CredentialHelpers {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		if n := cf.CredentialHelpers[h]; !helperName.MatchString(n) {
			return fmt.Errorf("docker config %s: credHelpers[%q] %q: %w", cf.Filename, h, n, ErrCredentialHelper)
		}
	}
	return nil
}

// loadConfig is docker's config, its helpers checked.
func loadConfig() (*configfile.ConfigFile, error) {
	cf, err := config.Load(configDir())
	if err != nil {
		return nil, err
	}
	if err := checkHelpers(cf); err != nil {
		return nil, err
	}
	return cf, nil
}

// dockerKeychain is go-containerregistry's default keychain (docker's
// config and helpers) after checking the helpers' names.
type dockerKeychain struct{}

func (dockerKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if _, err := loadConfig(); errors.Is(err, ErrCredentialHelper) {
		return nil, err
	}
	return authn.DefaultKeychain.Resolve(r)
}
