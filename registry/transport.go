package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"snap/internal/fdpath"
)

// newTransport is the HTTP transport for registry reg: TLS that trusts the
// system's CAs and those in CertsDir/reg, with reg's client certificate if
// it has one, and no plain HTTP (nor unverified TLS) except where docker
// allows it.
func newTransport(reg string, opts Options) (http.RoundTripper, error) {
	base := remote.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.Insecure {
		cfg.InsecureSkipVerify = true //nolint:gosec // the user asked: docker's insecure-registries
	} else if err := loadCerts(cfg, opts.certsDir(), reg); err != nil {
		return nil, err
	}
	base.TLSClientConfig = cfg
	return &guard{next: base, allowHTTP: insecureOK(reg, opts), anyHTTP: opts.Insecure}, nil
}

func (o Options) certsDir() string {
	if o.CertsDir == "" {
		return DefaultCertsDir
	}
	return o.CertsDir
}

// loadCerts reads docker's certs.d layout for reg: *.crt are CAs added to
// the system's, NAME.cert with NAME.key a client certificate. A missing
// directory is no error; a file that is not what its name says is.
func loadCerts(cfg *tls.Config, dir, reg string) error {
	// The registry name becomes a path: it was parsed as a host[:port],
	// which holds no '/', but a ".." host must not climb out either.
	if reg == "" || strings.ContainsAny(reg, `/\`) || reg == "." || reg == ".." {
		return fmt.Errorf("registry %q: %w", reg, ErrReference)
	}
	d := filepath.Join(dir, reg)
	entries, err := os.ReadDir(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("registry %s: certificates: %w", reg, err)
	}
	for _, e := range entries {
		p := filepath.Join(d, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".crt"):
			pem, err := fdpath.ReadRegular(p, 1<<20)
			if err != nil {
				return fmt.Errorf("registry %s: CA %s: %w", reg, p, err)
			}
			if cfg.RootCAs == nil {
				if cfg.RootCAs, err = x509.SystemCertPool(); err != nil || cfg.RootCAs == nil {
					cfg.RootCAs = x509.NewCertPool()
				}
			}
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("registry %s: CA %s: no PEM certificate in it", reg, p)
			}
		case strings.HasSuffix(e.Name(), ".cert"):
			key := strings.TrimSuffix(p, ".cert") + ".key"
			pair, err := tls.LoadX509KeyPair(p, key)
			if err != nil {
				return fmt.Errorf("registry %s: client certificate %s: %w", reg, p, err)
			}
			cfg.Certificates = append(cfg.Certificates, pair)
		}
	}
	return nil
}

// guard refuses plain HTTP to registries where docker refuses it:
// go-containerregistry falls back to http for RFC 1918 addresses too, and
// docker only for loopback (or insecure-registries). It sees every request,
// redirected ones too (the client follows redirects through it), so a
// loopback registry cannot send snap to plain HTTP elsewhere. It also
// bounds what a manifest or index GET may read: go-containerregistry reads
// up to 100 MiB of one into memory.
type guard struct {
	next      http.RoundTripper
	allowHTTP bool // the registry may be plain HTTP: it is loopback, or anyHTTP
	anyHTTP   bool // Options.Insecure: any host may be
}

// maxManifest bounds a manifest or an index, as docker and distribution
// bound them (4 MiB).
const maxManifest = 4 << 20

func (g *guard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !g.anyHTTP && !(g.allowHTTP && Loopback(r.URL.Host)) {
		return nil, fmt.Errorf("registry %s: %w (refusing plain HTTP)", oneLine(r.URL.Host, 200), ErrInsecure)
	}
	resp, err := g.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/") {
		return resp, err
	}
	if resp.ContentLength > maxManifest {
		resp.Body.Close()
		return nil, fmt.Errorf("manifest of %d bytes: %w (the limit is %d)", resp.ContentLength, ErrTooLarge, maxManifest)
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxManifest}
	return resp, nil
}

// limitedBody fails a read past its limit, rather than ending quietly as
// io.LimitReader does: a cut manifest must not parse.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("manifest larger than %d bytes: %w", maxManifest, ErrTooLarge)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func hostPlatform() v1.Platform {
	p := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7" // as docker asks on arm; arm64's v8 is often left out
	}
	return p
}
