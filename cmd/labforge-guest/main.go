// Command labforge-guest is the program labforge runs on a guest: its
// verify agent (verify/agent). labforge uploads it when a verify session
// starts and it removes itself when the session ends; build it static
// (CGO_ENABLED=0), as scripts/install does, so that it runs on any guest.
package main

import (
	"os"

	"github.com/labforge/labforge/verify/agent"
)

func main() { os.Exit(agent.Main(os.Args[1:])) }
