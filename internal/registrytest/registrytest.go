// Package registrytest runs a real registry for tests: Debian's
// docker-registry (CNCF distribution 2.8) on a free loopback port, with its
// configuration, storage and log in a temp dir, plain or with TLS from a CA
// made here and htpasswd auth. Tests drive snap, docker, skopeo and crane
// against it and read its request log to see what actually travelled.
package registrytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"snap/internal/testenv"
)

// Options chooses how the registry is served.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost from
	// a fresh self-signed CA (CAFile, CertsDir).
	TLS bool
	// Auth demands basic auth against an htpasswd file holding User and
	// Password.
	Auth bool
}

// Registry is one running docker-registry.
type Registry struct {
	Host     string // "127.0.0.1:PORT"
	Scheme   string // "http" or "https"
	Dir      string // config.yml, storage/, registry.log, and the TLS and htpasswd files
	CAFile   string // PEM of the CA when TLS, "" otherwise
	CertsDir string // docker-style certs.d: CertsDir/<Host>/ca.crt when TLS
	User     string // when Auth
	Password string // when Auth

	bin     string
	config  string
	logPath string
	pool    *x509.CertPool // nil without TLS

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	syncN  int
}

// startTimeout bounds the wait for a starting registry to answer: it
// answers in well under a second, so this only ends a hang.
const startTimeout = 30 * time.Second

// Start runs a registry for the test and stops it when the test ends.
// Without docker-registry on PATH the test skips (fails in CI).
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	bin := testenv.Tool(t, "docker-registry")
	dir := t.TempDir()
	r := &Registry{
		Scheme:  "http",
		Dir:     dir,
		bin:     bin,
		config:  filepath.Join(dir, "config.yml"),
		logPath: filepath.Join(dir, "registry.log"),
	}
	if err := os.Mkdir(filepath.Join(dir, "storage"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	// The port is free when chosen but another process may take it before
	// the registry binds; a fresh port then does.
	var err error
	for range 5 {
		var port string
		if port, err = freePort(); err != nil {
			t.Fatal(err)
		}
		r.Host = net.JoinHostPort("127.0.0.1", port)
		if err = r.configure(opts); err != nil {
			t.Fatal(err)
		}
		if err = r.start(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		t.Fatalf("registrytest: %v\n%s", err, r.Log())
	}
	return r
}

// Ref names repoTag ("team/app:1") on this registry.
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// URL is the registry's address for path ("/v2/").
func (r *Registry) URL(path string) string { return r.Scheme + "://" + r.Host + path }

// Transport trusts the registry's CA (and only it) when TLS; otherwise it
// is a plain transport. It never sends credentials by itself.
func (r *Registry) Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.pool}
	}
	return tr
}

// Kill ends the registry with SIGKILL, as a crash would: uploads in flight
// stay half done in its storage.
func (r *Registry) Kill() { r.signal(syscall.SIGKILL) }

// Stop ends the registry. It is safe to call when it is not running.
func (r *Registry) Stop() { r.signal(syscall.SIGTERM) }

// Restart runs the registry again on the same port and storage, after Kill
// or Stop.
func (r *Registry) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	if err := r.start(); err != nil {
		t.Fatalf("registrytest: restart: %v\n%s", err, r.Log())
	}
}

// Log is everything the registry wrote, for a failing test's message.
func (r *Registry) Log() string {
	b, err := os.ReadFile(r.logPath)
	if err != nil {
		return fmt.Sprintf("(no registry log: %v)", err)
	}
	return string(b)
}

// Requests counts the requests in the registry's access log whose method
// is method and whose URL path (query left off) matches pathRE, which is
// not anchored: Requests("PATCH", `/blobs/uploads/`). The count covers every
// run of the registry since Start; take the difference of two counts for
// what happened in between.
//
// A request's line is written when its handler returns; while the
// registry runs, Requests first sends a request of its own and waits for
// its line, so that what the caller did before is all in the log.
func (r *Registry) Requests(method, pathRE string) int {
	re := regexp.MustCompile(pathRE)
	r.sync()
	n := 0
	for _, e := range parseAccessLog(r.Log()) {
		if e.method == method && re.MatchString(e.path) {
			n++
		}
	}
	return n
}

// TrustForDocker installs the registry's CA where dockerd looks for it,
// /etc/docker/certs.d/<Host>/ca.crt, until the test ends. dockerd reads
// certs.d on each connection, so it needs no restart. Note that dockerd
// already treats 127.0.0.0/8 as an insecure registry.
func (r *Registry) TrustForDocker(t testing.TB) {
	t.Helper()
	if r.CAFile == "" {
		t.Fatal("registrytest: TrustForDocker needs a registry started with TLS")
	}
	testenv.Root(t, "writing /etc/docker/certs.d")
	dir := filepath.Join("/etc/docker/certs.d", r.Host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ca, err := os.ReadFile(r.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
}

var errAddrInUse = errors.New("address in use")

// start runs the registry and waits until /v2/ answers.
func (r *Registry) start() error {
	log, err := os.OpenFile(r.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	fi, err := log.Stat()
	if err != nil {
		return err
	}
	logStart := fi.Size()
	fmt.Fprintf(log, "### registrytest: %s serve %s on %s\n", r.bin, r.config, r.Host)
	cmd := exec.Command(r.bin, "serve", r.config)
	cmd.Dir = r.Dir
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: a Ctrl-C meant for go test must not kill the
	// registry under a test that is still cleaning up. Pdeathsig ends it
	// with the test binary when no cleanup runs (go test's -timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("start %s: %w", r.bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()

	// A probe ends when the registry exits: it may have lost the port to
	// another process, which then holds our probe.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	since := func() string {
		if l := r.Log(); int64(len(l)) > logStart {
			return l[logStart:]
		}
		return ""
	}
	client := &http.Client{Transport: r.Transport(), Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(startTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, "GET", r.URL("/v2/"), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		select {
		case <-exited:
			if strings.Contains(since(), "address already in use") {
				return fmt.Errorf("registry on %s: %w", r.Host, errAddrInUse)
			}
			return fmt.Errorf("registry on %s exited: %v", r.Host, cmd.ProcessState)
		default:
		}
		if err == nil {
			resp.Body.Close()
			// Our registry logs the probe before it answers; a registry
			// that does not is another process's, on our port.
			if !strings.Contains(since(), `"GET /v2/ HTTP/`) {
				r.Kill()
				return fmt.Errorf("registry on %s: another process answers there: %w", r.Host, errAddrInUse)
			}
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			// Something listens and answers wrong (a TLS failure, say):
			// waiting will not mend it.
			r.Kill()
			return fmt.Errorf("registry on %s: %w", r.Host, err)
		}
		if time.Now().After(deadline) {
			r.Kill()
			return fmt.Errorf("registry on %s did not answer in %v: %w", r.Host, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pdeathsig fires when the thread that forked the child ends, not the
// process, and Go ends a thread whose goroutine exits locked to it (as
// code that enters namespaces does). So every registry is forked from one
// thread that lives as long as the test binary.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread()
			for req := range spawner.reqs {
				req.done <- req.cmd.Start()
			}
		}()
	})
	done := make(chan error)
	spawner.reqs <- spawnReq{cmd, done}
	return <-done
}

func (r *Registry) signal(sig syscall.Signal) {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-exited
	}
}

// stopTimeout is how long a stopping registry may take before it is
// killed; it stops at once, so this only ends a hang.
const stopTimeout = 10 * time.Second

// syncPrefix starts the path of Requests' own requests; no registry route
// has it, so they get 404 and match no pattern a test asks about under /v2/.
const syncPrefix = "/registrytest-sync/"

// sync makes sure the access log holds every request answered so far: it
// sends one more and waits for that one's line. Handlers of earlier
// requests had returned (and logged) before the client saw their answers:
// net/http flushes a small answer (all of the upload, HEAD and manifest
// ones) only after the handler, access log included, returns. A large blob
// GET may reach its client before its line is written; the wait for the
// line of the request sent after it covers that in practice.
func (r *Registry) sync() {
	r.mu.Lock()
	running := r.cmd != nil
	r.syncN++
	path := fmt.Sprintf("%s%d", syncPrefix, r.syncN)
	r.mu.Unlock()
	if !running {
		return
	}
	client := &http.Client{Transport: r.Transport(), Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(r.URL(path))
	if err != nil {
		return
	}
	resp.Body.Close()
	// The raw line, not parseAccessLog: if the format ever changes, the
	// counts go wrong and say so, rather than this wait hanging.
	line := fmt.Sprintf(`"GET %s HTTP/`, path)
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(r.Log(), line) {
		if time.Now().After(deadline) {
			panic(fmt.Sprintf("registrytest: the registry on %s did not log %s in %v; its log:\n%s", r.Host, path, startTimeout, r.Log()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type accessEntry struct {
	method, path string
	status       string
}

// accessLine is one line of the Apache combined log that distribution's
// access log writes:
// 127.0.0.1 - - [23/Nov/2026:17:38:03 +0000] "POST /v2/a/b/blobs/uploads/ HTTP/1.1" 202 0 "" "curl/7.88.1"
// The user field is "-" or the authenticated user.
var accessLine = regexp.MustCompile(`^\S+ \S+ \S+ \[[^\]]*\] "([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) `)

// parseAccessLog picks the access log's lines out of the registry's output,
// where they are interleaved with its logrus lines (which name the same
// requests again, and are not counted).
func parseAccessLog(log string) []accessEntry {
	var out []accessEntry
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := accessLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		path := m[2]
		if u, err := url.ParseRequestURI(m[2]); err == nil {
			path = u.Path
		} else if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		out = append(out, accessEntry{method: m[1], path: path, status: m[3]})
	}
	return out
}

// freePort asks the kernel for a loopback port nobody listens on.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// configure writes config.yml for r.Host, and the CA, certificate and
// htpasswd files opts asks for.
func (r *Registry) configure(opts Options) error {
	var cfg bytes.Buffer
	// The access log goes to stdout, the logrus lines to stderr; both land
	// in registry.log. The upload purger is off so that a half upload
	// stays for a resumed push to find.
	fmt.Fprintf(&cfg, `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: registrytest-%s
`, quote(filepath.Join(r.Dir, "storage")), r.Host, randHex(8))
	if opts.TLS {
		if r.pool == nil {
			if err := r.makeCerts(); err != nil {
				return err
			}
		}
		fmt.Fprintf(&cfg, `  tls:
    certificate: %s
    key: %s
`, quote(filepath.Join(r.Dir, "server.crt")), quote(filepath.Join(r.Dir, "server.key")))
		certs := filepath.Join(r.Dir, "certs.d")
		os.RemoveAll(certs)
		if err := os.MkdirAll(filepath.Join(certs, r.Host), 0o755); err != nil {
			return err
		}
		ca, err := os.ReadFile(r.CAFile)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(certs, r.Host, "ca.crt"), ca, 0o644); err != nil {
			return err
		}
		r.CertsDir = certs
	}
	if opts.Auth {
		if r.User == "" {
			r.User, r.Password = "snap", randHex(12)
			hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
			if err != nil {
				return err
			}
			line := r.User + ":" + string(hash) + "\n"
			if err := os.WriteFile(filepath.Join(r.Dir, "htpasswd"), []byte(line), 0o600); err != nil {
				return err
			}
		}
		fmt.Fprintf(&cfg, `auth:
  htpasswd:
    realm: registrytest
    path: %s
`, quote(filepath.Join(r.Dir, "htpasswd")))
	}
	return os.WriteFile(r.config, cfg.Bytes(), 0o644)
}

// makeCerts makes a CA and a server certificate it signs for 127.0.0.1 and
// localhost: ca.crt, server.crt, server.key.
func (r *Registry) makeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "registrytest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	r.CAFile = filepath.Join(r.Dir, "ca.crt")
	files := []struct {
		name, typ string
		der       []byte
		mode      os.FileMode
	}{
		{"ca.crt", "CERTIFICATE", caDER, 0o644},
		{"server.crt", "CERTIFICATE", der, 0o644},
		{"server.key", "EC PRIVATE KEY", keyDER, 0o600},
	}
	for _, f := range files {
		b := pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der})
		if err := os.WriteFile(filepath.Join(r.Dir, f.name), b, f.mode); err != nil {
			return err
		}
	}
	r.pool = x509.NewCertPool()
	r.pool.AddCert(ca)
	r.Scheme = "https"
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// quote makes s a YAML double-quoted string (temp dirs are plain, but a
// path must not become YAML syntax).
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
