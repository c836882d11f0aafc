package instance

import (
	"context"
	"fmt"
	"time"

	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
)

// Start boots a stopped instance again on its own disk (or resumes a
// paused one) and waits until its SSH answers. Its files and work stay
// as they were; a failure leaves them so.
func Start(ctx context.Context, c *virt.Conn, name string, timeout time.Duration) (*Instance, *sshx.Client, error) {
	if err := ValidName(name); err != nil {
		return nil, nil, err
	}
	unlock, err := lock(name)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	inst, err := Load(name)
	if err != nil {
		return nil, nil, err
	}
	if !inst.Ready {
		return nil, nil, fmt.Errorf("instance %q never finished coming up; `labforge down %s` removes what is left", name, name)
	}
	c, done, err := inst.hypervisor(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	if err := c.Boot(inst.Domain); err != nil {
		if virt.IsPortConflict(err, inst.SSHPort) {
			return nil, nil, fmt.Errorf("instance %s: its ssh port 127.0.0.1:%d is taken by another program now; free it and start again", name, inst.SSHPort)
		}
		return nil, nil, fmt.Errorf("instance %s: %w", name, err)
	}
	client, err := WaitSSH(ctx, c, inst, timeout)
	if err != nil {
		return nil, nil, err
	}
	return inst, client, nil
}

// Stop shuts an instance down, cleanly through ACPI, destroying it only
// when it has not powered off within timeout. Its disk stays.
func Stop(ctx context.Context, c *virt.Conn, name string, timeout time.Duration) error {
	if err := ValidName(name); err != nil {
		return err
	}
	unlock, err := lock(name)
	if err != nil {
		return err
	}
	defer unlock()
	inst, err := Load(name)
	if err != nil {
		return err
	}
	c, done, err := inst.hypervisor(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	return c.Shutdown(ctx, inst.Domain, timeout)
}

// hypervisor is a connection to the hypervisor the instance runs on: c
// when that is c's, else a new one, closed by the returned func.
func (i *Instance) hypervisor(ctx context.Context, c *virt.Conn) (*virt.Conn, func(), error) {
	if i.Host == "" || i.Host == c.URI {
		return c, func() {}, nil
	}
	rc, err := virt.Open(ctx, i.Host)
	if err != nil {
		return nil, nil, fmt.Errorf("instance %s runs on %s: %w", i.Name, i.Host, err)
	}
	return rc, func() { rc.Close() }, nil
}
