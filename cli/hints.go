package cli

import (
	"errors"

	"snap/diff"
	"snap/registry"
	"snap/source"
)

// hints name the flag that answers a library error: the libraries say
// what is wrong in their own terms and never name a flag of this CLI.
var hints = []struct {
	err  error
	hint string
}{
	{diff.ErrUpperIncomplete, "use --rootfs with the merged dir instead"},
	{source.ErrNeedBase, "give --base IMAGE"},
	{registry.ErrCertificate, "put the registry's CA in " + registry.DefaultCertsDir + "/HOST:PORT/ca.crt (or --cert-dir), or give --tls-verify=false"},
	{registry.ErrInsecure, "give --tls-verify=false to allow it"},
}

// withHint returns err with the CLI's hint for it, if it has one.
func withHint(err error) error {
	for _, h := range hints {
		if errors.Is(err, h.err) {
			return hinted{err, h.hint}
		}
	}
	return err
}

type hinted struct {
	error
	hint string
}

func (h hinted) Error() string { return h.error.Error() + ": " + h.hint }
func (h hinted) Unwrap() error { return h.error }
