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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
