package registrytest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// get does method on the registry's path with r's transport, with basic
// auth when user is set, and returns the status.
func get(t *testing.T, r *Registry, method, path, user, password string) int {
	t.Helper()
	req, err := http.NewRequest(method, r.URL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	c := &http.Client{Transport: r.Transport()}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, r.Log())
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestStartServes(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		scheme string
		noAuth int // status of GET /v2/ without credentials
	}{
		{"plain", Options{}, "http", http.StatusOK},
		{"tls", Options{TLS: true}, "https", http.StatusOK},
		{"auth", Options{Auth: true}, "http", http.StatusUnauthorized},
		{"tls and auth", Options{TLS: true, Auth: true}, "https", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Start(t, tc.opts)
			if !strings.HasPrefix(r.Host, "127.0.0.1:") || r.Ref("team/app:1") != r.Host+"/team/app:1" {
				t.Errorf("Host %q, Ref %q", r.Host, r.Ref("team/app:1"))
			}
			if r.Scheme != tc.scheme {
				t.Errorf("Scheme %q, want %q", r.Scheme, tc.scheme)
			}
			if got := get(t, r, "GET", "/v2/", "", ""); got != tc.noAuth {
				t.Errorf("GET /v2/ without credentials: %d, want %d", got, tc.noAuth)
			}
			if tc.opts.Auth {
				if r.User == "" || r.Password == "" {
					t.Fatalf("User %q, Password %q", r.User, r.Password)
				}
				if got := get(t, r, "GET", "/v2/", r.User, r.Password); got != http.StatusOK {
					t.Errorf("GET /v2/ with credentials: %d, want 200", got)
				}
				if got := get(t, r, "GET", "/v2/", r.User, r.Password+"x"); got != http.StatusUnauthorized {
					t.Errorf("GET /v2/ with a wrong password: %d, want 401", got)
				}
			} else if r.User != "" || r.Password != "" {
				t.Errorf("no auth but User %q, Password %q", r.User, r.Password)
			}
			if !tc.opts.TLS {
				if r.CAFile != "" || r.CertsDir != "" {
					t.Errorf("no TLS but CAFile %q, CertsDir %q", r.CAFile, r.CertsDir)
				}
				return
			}
			// The CA is where a docker-style --cert-dir client looks.
			ca, err := os.ReadFile(r.CAFile)
			if err != nil {
				t.Fatal(err)
			}
			inCertsDir, err := os.ReadFile(filepath.Join(r.CertsDir, r.Host, "ca.crt"))
			if err != nil || !bytes.Equal(ca, inCertsDir) {
				t.Errorf("CertsDir/%s/ca.crt is not CAFile (%v)", r.Host, err)
			}
			// A client that does not trust the CA is refused, over the
			// name as well as the address.
			for _, u := range []string{r.URL("/v2/"), "https://" + strings.Replace(r.Host, "127.0.0.1", "localhost", 1) + "/v2/"} {
				resp, err := http.Get(u)
				if err == nil {
					resp.Body.Close()
					t.Errorf("GET %s trusting only the system's CAs: %s, want an unknown authority", u, resp.Status)
				} else if !errors.As(err, &x509.UnknownAuthorityError{}) {
					t.Errorf("GET %s trusting only the system's CAs: %v, want an unknown authority", u, err)
				}
			}
			// The certificate names localhost too.
			c := &http.Client{Transport: r.Transport()}
			defer c.CloseIdleConnections()
			resp, err := c.Get("https://" + strings.Replace(r.Host, "127.0.0.1", "localhost", 1) + "/v2/")
			if err != nil {
				t.Fatalf("GET via localhost: %v", err)
			}
			resp.Body.Close()
			// Plain HTTP to a TLS registry is no registry answer.
			if resp, err := http.Get("http://" + r.Host + "/v2/"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Errorf("plain HTTP to the TLS registry: %s", resp.Status)
				}
			}
		})
	}
}

// TestRequestsCountsWhatWasSent does known requests by hand, including a
// refused one and a blob upload, and checks each count.
func TestRequestsCountsWhatWasSent(t *testing.T) {
	for _, opts := range []Options{{}, {TLS: true, Auth: true}} {
		t.Run(fmt.Sprintf("tls=%v auth=%v", opts.TLS, opts.Auth), func(t *testing.T) {
			r := Start(t, opts)
			user, pass := r.User, r.Password
			// Start's probe of /v2/ is in the log already.
			v2Before := r.Requests("GET", `^/v2/$`)
			if v2Before < 1 {
				t.Errorf("GET /v2/ before: %d, want Start's probe", v2Before)
			}
			get(t, r, "GET", "/v2/", user, pass)
			get(t, r, "GET", "/v2/", "", "") // 401 when auth: still a request
			get(t, r, "GET", "/v2/", "nobody", "wrong")

			// A monolithic blob upload: POST, then PUT with the bytes.
			blob := []byte("registrytest blob\n")
			dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
			c := &http.Client{Transport: r.Transport()}
			defer c.CloseIdleConnections()
			do := func(method, u string, body io.Reader, want int) *http.Response {
				t.Helper()
				req, err := http.NewRequest(method, u, body)
				if err != nil {
					t.Fatal(err)
				}
				if user != "" {
					req.SetBasicAuth(user, pass)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Fatalf("%s %s: %s, want %d\n%s", method, u, resp.Status, want, r.Log())
				}
				return resp
			}
			resp := do("POST", r.URL("/v2/team/app/blobs/uploads/"), nil, http.StatusAccepted)
			loc, err := resp.Location()
			if err != nil {
				t.Fatal(err)
			}
			q := loc.Query()
			q.Set("digest", dgst)
			loc.RawQuery = q.Encode()
			do("PUT", loc.String(), bytes.NewReader(blob), http.StatusCreated)
			do("HEAD", r.URL("/v2/team/app/blobs/"+dgst), nil, http.StatusOK)
			do("HEAD", r.URL("/v2/team/app/blobs/sha256:"+strings.Repeat("0", 64)), nil, http.StatusNotFound)

			tests := []struct {
				method, path string
				want         int
			}{
				{"GET", `^/v2/$`, v2Before + 3},
				{"POST", `/v2/.+/blobs/uploads/`, 1},
				{"POST", `^/v2/team/app/blobs/uploads/$`, 1},
				{"PUT", `/v2/.+/blobs/uploads/`, 1},
				{"PATCH", `/blobs/uploads/`, 0},
				{"HEAD", `/blobs/sha256:`, 2},
				{"HEAD", `/blobs/` + dgst + `$`, 1},
				{"PUT", `/manifests/`, 0},
				{"DELETE", `.`, 0},
				// Requests' own syncing requests are not under /v2/.
				{"GET", `^/v2/`, v2Before + 3},
			}
			for _, tc := range tests {
				if got := r.Requests(tc.method, tc.path); got != tc.want {
					t.Errorf("Requests(%q, %q) = %d, want %d", tc.method, tc.path, got, tc.want)
				}
			}
			if t.Failed() {
				t.Log(r.Log())
			}
		})
	}
}

func auth(r *Registry) remote.Option {
	if r.User == "" {
		return remote.WithAuth(authn.Anonymous)
	}
	return remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password})
}

func push(t *testing.T, r *Registry, repoTag string, img v1.Image) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, auth(r), remote.WithTransport(r.Transport())); err != nil {
		t.Fatalf("push %s: %v\n%s", ref, err, r.Log())
	}
	return ref
}

// TestRequestsCountsAPushsUploads pushes an image with go-containerregistry
// and then the same image again: the first sends each blob once, the
// second sends none.
func TestRequestsCountsAPushsUploads(t *testing.T) {
	r := Start(t, Options{TLS: true, Auth: true})
	const layers = 3
	img, err := random.Image(4096, layers)
	if err != nil {
		t.Fatal(err)
	}
	blobs := layers + 1 // and the config
	push(t, r, "team/app:1", img)
	first := map[string]int{
		"POST":  r.Requests("POST", `/v2/.+/blobs/uploads/`),
		"PATCH": r.Requests("PATCH", `/v2/.+/blobs/uploads/`),
		"PUT":   r.Requests("PUT", `/v2/.+/blobs/uploads/`),
		"PUTm":  r.Requests("PUT", `/v2/team/app/manifests/1$`),
	}
	// go-containerregistry sends each blob as POST, one PATCH, PUT; it
	// pings /v2/ first, so no POST is answered 401 and sent again.
	want := map[string]int{"POST": blobs, "PATCH": blobs, "PUT": blobs, "PUTm": 1}
	if fmt.Sprint(first) != fmt.Sprint(want) {
		t.Errorf("first push: %v, want %v\n%s", first, want, r.Log())
	}
	push(t, r, "team/app:2", img)
	for _, tc := range []struct{ method, path, key string }{
		{"POST", `/v2/.+/blobs/uploads/`, "POST"},
		{"PATCH", `/v2/.+/blobs/uploads/`, "PATCH"},
		{"PUT", `/v2/.+/blobs/uploads/`, "PUT"},
	} {
		if got := r.Requests(tc.method, tc.path); got != first[tc.key] {
			t.Errorf("second push of the same image: %s %s: %d after %d, want none more", tc.method, tc.path, got, first[tc.key])
		}
	}
	if got := r.Requests("PUT", `/v2/team/app/manifests/2$`); got != 1 {
		t.Errorf("second push's manifest PUTs: %d, want 1", got)
	}
}

// TestKillAndRestart pushes an image, kills the registry, sees it gone,
// restarts it on the same port and reads the image back whole.
func TestKillAndRestart(t *testing.T) {
	for _, opts := range []Options{{}, {TLS: true, Auth: true}} {
		t.Run(fmt.Sprintf("tls=%v auth=%v", opts.TLS, opts.Auth), func(t *testing.T) {
			r := Start(t, opts)
			img, err := random.Image(2048, 2)
			if err != nil {
				t.Fatal(err)
			}
			ref := push(t, r, "team/app:1", img)
			want, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			host := r.Host

			r.Kill()
			c := &http.Client{Transport: r.Transport()}
			defer c.CloseIdleConnections()
			if resp, err := c.Get(r.URL("/v2/")); err == nil {
				resp.Body.Close()
				t.Fatalf("GET /v2/ after Kill: %s, want no answer", resp.Status)
			} else if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("GET /v2/ after Kill: %v, want connection refused", err)
			}
			// A killed registry's log is complete: Requests still counts.
			if got := r.Requests("PUT", `/v2/team/app/manifests/1$`); got != 1 {
				t.Errorf("manifest PUTs counted after Kill: %d, want 1", got)
			}

			r.Restart(t)
			if r.Host != host {
				t.Fatalf("Restart moved the registry from %s to %s", host, r.Host)
			}
			got, err := remote.Image(ref, auth(r), remote.WithTransport(r.Transport()))
			if err != nil {
				t.Fatalf("pull after Restart: %v\n%s", err, r.Log())
			}
			if d, err := got.Digest(); err != nil || d != want {
				t.Errorf("digest after Restart %v (%v), want %v", d, err, want)
			}
			if err := validate.Image(got); err != nil {
				t.Errorf("image after Restart: %v", err)
			}
			// Counts span both runs.
			if got := r.Requests("PUT", `/v2/team/app/manifests/1$`); got != 1 {
				t.Errorf("manifest PUTs after Restart: %d, want 1", got)
			}
			if got := r.Requests("GET", `/v2/team/app/manifests/1$`); got != 1 {
				t.Errorf("manifest GETs after Restart: %d, want 1", got)
			}

			r.Stop()
			r.Stop() // twice is fine
			r.Restart(t)
			if code := get(t, r, "GET", "/v2/", r.User, r.Password); code != http.StatusOK {
				t.Errorf("GET /v2/ after Stop and Restart: %d", code)
			}
		})
	}
}

// TestKilledUploadResumes starts a chunked upload, kills the registry in
// the middle, and after Restart finds the bytes that arrived and finishes
// the same upload: what a resumed push needs of the registry.
func TestKilledUploadResumes(t *testing.T) {
	r := Start(t, Options{})
	c := &http.Client{Transport: r.Transport()}
	defer c.CloseIdleConnections()
	do := func(method, u string, body []byte, hdr map[string]string, want int) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %s, want %d\n%s", method, u, resp.Status, want, r.Log())
		}
		return resp
	}
	abs := func(resp *http.Response) string {
		t.Helper()
		loc, err := resp.Location()
		if err != nil {
			t.Fatal(err)
		}
		return loc.String()
	}
	blob := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	half := len(blob) / 2
	loc := abs(do("POST", r.URL("/v2/team/app/blobs/uploads/"), nil, nil, http.StatusAccepted))
	loc = abs(do("PATCH", loc, blob[:half], map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": fmt.Sprintf("0-%d", half-1),
	}, http.StatusAccepted))

	r.Kill()
	r.Restart(t)

	resp := do("GET", loc, nil, nil, http.StatusNoContent)
	if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", half-1); got != want {
		t.Fatalf("upload's Range after Restart: %q, want %q", got, want)
	}
	loc = abs(do("PATCH", loc, blob[half:], map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": fmt.Sprintf("%d-%d", half, len(blob)-1),
	}, http.StatusAccepted))
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	q := u.Query()
	q.Set("digest", dgst)
	u.RawQuery = q.Encode()
	do("PUT", u.String(), nil, nil, http.StatusCreated)
	do("HEAD", r.URL("/v2/team/app/blobs/"+dgst), nil, nil, http.StatusOK)
	if got := r.Requests("PATCH", `/blobs/uploads/`); got != 2 {
		t.Errorf("PATCHes: %d, want 2", got)
	}
}

func TestTrustForDocker(t *testing.T) {
	r := Start(t, Options{TLS: true})
	path := filepath.Join("/etc/docker/certs.d", r.Host, "ca.crt")
	t.Run("install", func(t *testing.T) {
		r.TrustForDocker(t)
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(r.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not the registry's CA", path)
		}
	})
	if t.Failed() || t.Skipped() {
		return
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after the test that trusted it: %v, want it gone", filepath.Dir(path), err)
	}
}

func TestParseAccessLog(t *testing.T) {
	log := `time="2026-11-23T17:38:03.574167258Z" level=info msg="response completed" http.request.method=GET http.request.uri=/v2/ http.response.status=200
127.0.0.1 - - [23/Nov/2026:17:38:03 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
127.0.0.1 - snap [23/Nov/2026:17:38:03 +0000] "PATCH /v2/a/b/blobs/uploads/0f3c?_state=abc%3D HTTP/1.1" 202 0 "" "go-containerregistry/v0.22.1"
127.0.0.1 - - [23/Nov/2026:17:38:03 +0000] "PUT /v2/a/b/blobs/uploads/0f3c?_state=x&digest=sha256%3Aab HTTP/1.1" 201 0 "" "ggcr"
### registrytest: /usr/bin/docker-registry serve config.yml on 127.0.0.1:1
127.0.0.1 - - [23/Nov/2026:17:38:03 +0000] "HEAD /v2/a/b/blobs/sha256:ab HTTP/1.1" 404 157 "" "ggcr"
`
	got := parseAccessLog(log)
	want := []accessEntry{
		{"GET", "/v2/", "200"},
		{"PATCH", "/v2/a/b/blobs/uploads/0f3c", "202"},
		{"PUT", "/v2/a/b/blobs/uploads/0f3c", "201"},
		{"HEAD", "/v2/a/b/blobs/sha256:ab", "404"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseAccessLog:\n got %v\nwant %v", got, want)
	}
}

// recorder is a testing.TB that records a Fatalf instead of ending the
// test.
type recorder struct {
	testing.TB
	failed bool
	msg    string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

// TestRestartOnATakenPortFails: when another process took the port while
// the registry was down, Restart fails at once and says why.
func TestRestartOnATakenPortFails(t *testing.T) {
	r := Start(t, Options{})
	r.Kill()
	l, err := net.Listen("tcp", r.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec := &recorder{TB: t}
	r.Restart(rec)
	if !rec.failed || !strings.Contains(rec.msg, "address in use") {
		t.Errorf("Restart on a taken port: failed %v, %q", rec.failed, rec.msg)
	}
}

// TestRestartDoesNotTakeAnotherRegistry: when another registry took the
// port and answers /v2/, Restart must not mistake it for ours.
func TestRestartDoesNotTakeAnotherRegistry(t *testing.T) {
	r := Start(t, Options{})
	r.Kill()
	l, err := net.Listen("tcp", r.Host)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
		w.Write([]byte("{}"))
	})}
	go srv.Serve(l)
	defer srv.Close()
	rec := &recorder{TB: t}
	r.Restart(rec)
	if !rec.failed || !strings.Contains(rec.msg, "address in use") {
		t.Errorf("Restart with another registry on the port: failed %v, %q", rec.failed, rec.msg)
	}
}
