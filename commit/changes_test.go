package commit

import (
	"maps"
	"slices"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// TestChangesValidatedAsDockerBuilder holds -c lines to what docker's
// builder takes: EXPOSE through go-connections' port parser (ranges
// expanded, protocols lowercased and checked), STOPSIGNAL through moby's
// signal parser.
func TestChangesValidatedAsDockerBuilder(t *testing.T) {
	tests := []struct {
		changes []string
		ports   []string // ExposedPorts after, sorted; nil when refused
		signal  string
		refused string // part of the error; "" when accepted
	}{
		{changes: []string{"EXPOSE 80"}, ports: []string{"80/tcp"}},
		{changes: []string{"EXPOSE 1-3"}, ports: []string{"1/tcp", "2/tcp", "3/tcp"}},
		{changes: []string{"EXPOSE 7-8/udp 9/sctp"}, ports: []string{"7/udp", "8/udp", "9/sctp"}},
		{changes: []string{"EXPOSE 80/UDP"}, ports: []string{"80/udp"}},
		{changes: []string{"EXPOSE 80/Tcp 80"}, ports: []string{"80/tcp"}},
		{changes: []string{"EXPOSE 0 65535"}, ports: []string{"0/tcp", "65535/tcp"}},
		{changes: []string{"EXPOSE 127.0.0.1:8080:80"}, ports: []string{"80/tcp"}},
		{changes: []string{`ENV PORTS="81 82/udp"`, "EXPOSE $PORTS"}, ports: []string{"81/tcp", "82/udp"}},
		{changes: []string{"EXPOSE abc"}, refused: "abc"},
		{changes: []string{"EXPOSE 99999"}, refused: "99999"},
		{changes: []string{"EXPOSE 80/xyz"}, refused: "xyz"},
		{changes: []string{"EXPOSE 3-1"}, refused: "3-1"},
		{changes: []string{"EXPOSE -1"}, refused: "-1"},
		{changes: []string{"EXPOSE 80 abc"}, refused: "abc"},
		{changes: []string{"EXPOSE $NOPE"}, ports: []string{}}, // docker too: no word, no port
		{changes: []string{"STOPSIGNAL SIGINT"}, signal: "SIGINT"},
		{changes: []string{"STOPSIGNAL int"}, signal: "int"},
		{changes: []string{"STOPSIGNAL 9"}, signal: "9"},
		{changes: []string{"STOPSIGNAL SIGRTMIN+3"}, signal: "SIGRTMIN+3"},
		{changes: []string{"ENV SIG=TERM", "STOPSIGNAL $SIG"}, signal: "TERM"},
		{changes: []string{"STOPSIGNAL FOO"}, refused: "FOO"},
		{changes: []string{"STOPSIGNAL 0"}, refused: "0"},
		{changes: []string{"STOPSIGNAL SIGFOO"}, refused: "SIGFOO"},
		{changes: []string{"STOPSIGNAL $NOPE"}, refused: "STOPSIGNAL"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.changes, "; "), func(t *testing.T) {
			var c dockerspec.DockerOCIImageConfig
			c.StopSignal = "SIGTERM"
			err := ApplyChanges(&c, tc.changes)
			if tc.refused != "" {
				if err == nil {
					t.Fatalf("accepted: ports %v, signal %q", c.ExposedPorts, c.StopSignal)
				}
				if !strings.Contains(err.Error(), tc.refused) {
					t.Errorf("error %q does not name %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.ports != nil {
				if got := slices.Sorted(maps.Keys(c.ExposedPorts)); !slices.Equal(got, tc.ports) {
					t.Errorf("ports %v, want %v", got, tc.ports)
				}
			}
			if tc.signal != "" && c.StopSignal != tc.signal {
				t.Errorf("stop signal %q, want %q", c.StopSignal, tc.signal)
			}
		})
	}
}
