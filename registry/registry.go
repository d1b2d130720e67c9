// Package registry moves images between snap's store and registries: pull,
// push, login and logout on go-containerregistry (the distribution protocol
// is never written by hand here). References and credentials are docker's:
// `localhost:5000/team/app:1`, docker.io and library/ by default, and the
// logins docker keeps in ~/.docker/config.json (DOCKER_CONFIG), credential
// helpers included, so a user logged in with docker is logged in with snap.
package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"unicode"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"snap/compression"
	"snap/progress"
)

var (
	// ErrReference is returned (wrapped) for a reference that is not one.
	ErrReference = errors.New("invalid reference")
	// ErrUnauthorized is returned (wrapped) when the registry refuses the
	// credentials, or asks for some and none are known.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotFound is returned (wrapped) for an unknown repository, tag or
	// digest, and for an index with no image for the platform.
	ErrNotFound = errors.New("not found")
	// ErrInsecure is returned (wrapped) when a registry that is not on
	// loopback would be reached over plain HTTP or without verifying its
	// certificate, and Options.Insecure does not allow it.
	ErrInsecure = errors.New("needs TLS")
	// ErrCertificate is returned (wrapped) when a registry's TLS certificate
	// is not trusted: no CA of the system's or of its certs.d directory
	// signed it, or it names another host.
	ErrCertificate = errors.New("TLS certificate not trusted")
	// ErrMismatch is returned (wrapped) when what a registry serves does not
	// match its digest, or a manifest does not match its config.
	ErrMismatch = errors.New("content does not match its digest")
	// ErrTooLarge is returned (wrapped) when a registry serves a manifest,
	// index or config larger than snap reads into memory.
	ErrTooLarge = errors.New("too large")
)

// Options are what every registry call takes.
type Options struct {
	// Insecure allows plain HTTP and unverified TLS to any registry (docker's
	// insecure-registries). Without it only loopback registries (localhost,
	// 127.0.0.0/8, ::1) may be plain HTTP, as docker allows.
	Insecure bool
	// CertsDir holds a directory per registry (HOST[:PORT]) with CA
	// certificates (*.crt) and client key pairs (*.cert, *.key), as docker's
	// /etc/docker/certs.d, which is the default.
	CertsDir string
	// Keychain finds credentials; the default is docker's config file and
	// credential helpers.
	Keychain authn.Keychain
	// Progress receives per-layer progress; nil drops it.
	Progress progress.Sink
	// Jobs is how many blobs move at once (default 4).
	Jobs int
	// Platform picks the image of a multi-platform index ("os/arch[/variant]");
	// "" is the host's.
	Platform string
	// Compression compresses layers the store holds uncompressed on the way
	// out (default gzip).
	Compression compression.Compression
	// UserAgent names the client to the registry.
	UserAgent string
}

// DefaultCertsDir is where docker reads registries' certificates.
const DefaultCertsDir = "/etc/docker/certs.d"

func (o Options) jobs() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return 4
}

func (o Options) sink() progress.Sink {
	if o.Progress == nil {
		return progress.Discard
	}
	return o.Progress
}

func (o Options) keychain() authn.Keychain {
	if o.Keychain == nil {
		return dockerKeychain{}
	}
	return o.Keychain
}

// ParseReference reads a reference as docker does: a registry host only when
// the first component has a '.' or ':' or is localhost; docker.io and
// library/ otherwise; tag latest when there is neither tag nor digest.
func ParseReference(s string, opts Options) (name.Reference, error) {
	if s == "" || strings.TrimSpace(s) != s {
		return nil, fmt.Errorf("reference %q: %w", s, ErrReference)
	}
	// docker's grammar first: go-containerregistry takes "a/../b".
	if _, err := reference.ParseNormalizedNamed(s); err != nil {
		return nil, fmt.Errorf("reference %q: %w: %v", s, ErrReference, err)
	}
	ref, err := name.ParseReference(s, name.StrictValidation, name.WithDefaultTag("latest"))
	if err != nil {
		// StrictValidation wants an explicit tag or digest; docker does not.
		ref, err = name.ParseReference(s)
	}
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w: %v", s, ErrReference, err)
	}
	if insecureOK(ref.Context().RegistryStr(), opts) {
		// go-containerregistry then tries https first and falls back to
		// http; the transport refuses http to any other host.
		ref, err = name.ParseReference(ref.String(), name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("reference %q: %w: %v", s, ErrReference, err)
		}
	}
	return ref, nil
}

// Loopback reports whether registry (HOST[:PORT]) is this machine's, where
// docker allows plain HTTP.
func Loopback(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func insecureOK(registry string, opts Options) bool {
	return opts.Insecure || Loopback(registry)
}

// remoteOptions are the go-containerregistry options for one call.
func remoteOptions(ctx context.Context, reg string, opts Options) ([]remote.Option, error) {
	tr, err := newTransport(reg, opts)
	if err != nil {
		return nil, err
	}
	ro := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(tr),
		remote.WithAuthFromKeychain(opts.keychain()),
		remote.WithJobs(opts.jobs()),
	}
	if opts.UserAgent != "" {
		ro = append(ro, remote.WithUserAgent(opts.UserAgent))
	}
	return ro, nil
}

// classify turns go-containerregistry's errors into the package's
// sentinels, saying what the registry said in one line: its error codes and
// messages, never its details or its raw body, which are the registry's to
// fill (a hostile one could fill a terminal).
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrInsecure) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrMismatch) {
		return err
	}
	// Before the registry's words: on loopback a failed TLS handshake is
	// followed by a plain HTTP try, whose "400" would hide the real cause.
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return fmt.Errorf("%w: %v", ErrCertificate, cv.Err)
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		// Other errors quote the registry too (a malformed header line,
		// a realm URL): one short line of them, the cause kept for errors.Is.
		return shortError{err}
	}
	var said []string
	for _, d := range te.Errors {
		said = append(said, oneLine(string(d.Code)+": "+d.Message, 200))
	}
	if len(said) == 0 {
		said = []string{fmt.Sprintf("HTTP %d %s", te.StatusCode, http.StatusText(te.StatusCode))}
	}
	what := "the registry says " + strings.Join(said, "; ")
	switch te.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %s", ErrUnauthorized, what)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	return fmt.Errorf("%s", what)
}

// shortError is err in one short line of printable text.
type shortError struct{ err error }

// Error keeps the head (what was asked) and the tail (the cause, such as
// "connection refused" after a long upload URL).
func (e shortError) Error() string {
	s := oneLine(e.err.Error(), 1<<20)
	if len(s) > 400 {
		s = strings.ToValidUTF8(s[:200]+" ... "+s[len(s)-200:], "")
	}
	return s
}
func (e shortError) Unwrap() error { return e.err }

// oneLine keeps a registry's words to one line of at most max bytes of
// printable text (C1 controls too: a terminal may take U+009B as CSI).
func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "..."
	}
	return s
}

// platformOf parses "os/arch[/variant]"; "" is the host's.
func platformOf(s string) (v1.Platform, error) {
	if s == "" {
		return hostPlatform(), nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("platform %q: %w", s, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	return *p, nil
}
