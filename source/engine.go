// Package source holds the things snap commits: containers of other
// runtimes (docker://, runc://) seen through their own interfaces, each a
// sourcing.Source. Parse reads any container reference a user writes
// (NAME, docker://, runc://, dir://) into its source, snap's own
// containers included, so a program opens one as the CLI does.
package source

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Engine is a Docker Engine API client on a unix socket, just the calls a
// commit needs.
type Engine struct {
	host   string // socket path
	http   *http.Client
	libpod bool
}

// Libpod reports whether the engine answered as podman's compatible API
// does (its Libpod-Api-Version header).
func (e *Engine) Libpod() bool { return e.libpod }

// NewEngine connects to host, as DOCKER_HOST names it (unix:// only); empty
// is the default socket.
func NewEngine(host string) (*Engine, error) {
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		// snap reads a container's files, not a stream from the engine:
		// an engine it reaches over the network keeps them elsewhere.
		return nil, fmt.Errorf("docker engine %s: %w", host, ErrRemoteEngine)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &Engine{host: sock, http: &http.Client{Transport: tr}}, nil
}

// apiError is the engine's JSON error body.
type apiError struct {
	Message string `json:"message"`
}

func (e *Engine) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://docker/v1.41"+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-tar")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return fmt.Errorf("docker engine at %s is not answering: %w", e.host, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Libpod-Api-Version") != "" {
		e.libpod = true
	}
	if resp.StatusCode >= 300 {
		var ae apiError
		b, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(b, &ae) == nil && ae.Message != "" {
			return fmt.Errorf("docker: %s", ae.Message)
		}
		return fmt.Errorf("docker: %s %s: %s", method, path, resp.Status)
	}
	switch o := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
	case io.Writer:
		_, err = io.Copy(o, resp.Body)
	default:
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	return err
}

// ContainerJSON is the part of GET /containers/{id}/json snap reads.
type ContainerJSON struct {
	ID     string `json:"Id"`
	Name   string
	Image  string
	Driver string
	State  struct {
		Running bool
		Paused  bool
	}
	Config      json.RawMessage
	GraphDriver struct {
		Name string
		Data map[string]string
	}
}

func (e *Engine) Inspect(ctx context.Context, name string) (*ContainerJSON, error) {
	var c ContainerJSON
	if err := e.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/json", nil, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func (e *Engine) Pause(ctx context.Context, id string) error {
	return e.do(ctx, http.MethodPost, "/containers/"+id+"/pause", nil, nil)
}

func (e *Engine) Unpause(ctx context.Context, id string) error {
	return e.do(ctx, http.MethodPost, "/containers/"+id+"/unpause", nil, nil)
}

// SaveImage streams `docker save IMAGE` into w.
func (e *Engine) SaveImage(ctx context.Context, image string, w io.Writer) error {
	return e.do(ctx, http.MethodGet, "/images/"+url.PathEscape(image)+"/get", nil, w)
}

// LoadImage hands a docker-archive to the engine (`docker load`).
func (e *Engine) LoadImage(ctx context.Context, r io.Reader) error {
	return e.do(ctx, http.MethodPost, "/images/load?quiet=1", r, nil)
}

// Info is the part of GET /info snap reads: where the engine keeps its
// layers and with which storage driver.
type Info struct {
	Driver        string
	DockerRootDir string
}

func (e *Engine) Info(ctx context.Context) (*Info, error) {
	var i Info
	if err := e.do(ctx, http.MethodGet, "/info", nil, &i); err != nil {
		return nil, err
	}
	return &i, nil
}
