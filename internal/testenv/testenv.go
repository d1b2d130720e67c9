// Package testenv says what a test needs from the machine it runs on: root,
// a running dockerd, a tool on PATH. Outside CI a test whose need is not met
// skips with one line naming what is missing; with CI=true it fails
// instead, so that CI can never go green by skipping.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run in CI (CI=true), where every test runs
// for real.
func CI() bool { return os.Getenv("CI") == "true" }

// Need skips t (fails it in CI) unless ok; what names the need ("a running
// dockerd").
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if !ok {
		missing(t, what)
	}
}

// NeedNoError is Need for a probe that says what went wrong: err, on the
// same line as what.
func NeedNoError(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		missing(t, what+" ("+oneLine(err.Error())+")")
	}
}

// Root needs the test to run as root; why says for what ("overlay mounts").
func Root(t testing.TB, why string) {
	t.Helper()
	Need(t, os.Geteuid() == 0, "root for "+why)
}

// Tool needs name on PATH and returns its path.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, name+" on PATH")
	return p
}

func missing(t testing.TB, what string) {
	t.Helper()
	if CI() {
		t.Fatalf("CI must provide %s", what)
		return
	}
	t.Skipf("needs %s", what)
}

// oneLine keeps a probe's error (a command's stderr, often) to the one
// line a skip gets.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Deps lists the packages pkg (a directory, as go list takes it) imports,
// directly or not, itself included: for tests that hold the layering.
func Deps(t testing.TB, pkg string) []string {
	t.Helper()
	goCmd := Tool(t, "go")
	out, err := exec.Command(goCmd, "list", "-deps", pkg).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list %s: %v: %s", pkg, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	return strings.Fields(string(out))
}
