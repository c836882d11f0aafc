// Command labforge-labs is the course's program on a lab host: the
// student's `labs` command runs it to list, show, start and check
// exercises and to ask for hints (labs.GuestMain), with the host's copy of
// the course, which has no solutions. labforge installs it with the course
// (`labforge lab start`, or a spec's `course: true` at build time). Build
// it static (CGO_ENABLED=0), as scripts/install does; it carries no course
// itself.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/labforge/labforge/labs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := labs.GuestMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
