package testenv

import (
	"errors"
	"fmt"
	"testing"
)

// recorder is a testing.TB that records what a helper asked of it.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func TestMissingSkipsOutsideCIAndFailsInIt(t *testing.T) {
	tests := []struct {
		name    string
		ci      string
		call    func(testing.TB)
		skipped bool
		failed  bool
		msg     string
	}{
		{"met", "", func(t testing.TB) { Need(t, true, "x") }, false, false, ""},
		{"met in CI", "true", func(t testing.TB) { Need(t, true, "x") }, false, false, ""},
		{"missing", "", func(t testing.TB) { Need(t, false, "a running dockerd") }, true, false, "needs a running dockerd"},
		{"missing in CI", "true", func(t testing.TB) { Need(t, false, "a running dockerd") }, false, true, "CI must provide a running dockerd"},
		{"CI=1 is not CI", "1", func(t testing.TB) { Need(t, false, "x") }, true, false, "needs x"},
		{"probe error on one line", "", func(t testing.TB) {
			NeedNoError(t, errors.New("docker version: exit status 1:\npermission denied\n"), "a running dockerd")
		}, true, false, "needs a running dockerd (docker version: exit status 1: permission denied)"},
		{"probe error in CI", "true", func(t testing.TB) { NeedNoError(t, errors.New("no"), "a running dockerd") },
			false, true, "CI must provide a running dockerd (no)"},
		{"probe ok", "true", func(t testing.TB) { NeedNoError(t, nil, "a running dockerd") }, false, false, ""},
		{"tool", "", func(t testing.TB) { Tool(t, "no-such-tool-snap") }, true, false, "needs no-such-tool-snap on PATH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			tc.call(r)
			if r.skipped != tc.skipped || r.failed != tc.failed || r.msg != tc.msg {
				t.Errorf("skipped %v, failed %v, %q; want %v, %v, %q", r.skipped, r.failed, r.msg, tc.skipped, tc.failed, tc.msg)
			}
		})
	}
}
