// Command snap commits container changes into OCI images.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"snap/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
