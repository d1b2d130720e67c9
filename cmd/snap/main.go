// Command snap commits container changes into OCI images.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"snap/cli"
	"snap/container"
)

// init runs before main: libcontainer re-executes snap as "snap init" inside
// a new container's namespaces, and that process never reaches main.
func init() { container.InitIfAsked() }

func main() {
	// The cause names the signal, so the exit status can be 128+signal.
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		cancel(cli.Signaled{Signal: s.(syscall.Signal)})
		// Later signals do not end snap at once: snap run passes every
		// signal on to its container (docker's sig-proxy) and must
		// outlive them; a cancelled command is already on its way out.
	}()
	os.Exit(cli.Run(ctx, os.Args, os.Stdout, os.Stderr))
}
