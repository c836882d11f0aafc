package labhost

import (
	"context"
	"time"

	"github.com/labforge/labforge/builder"
	"github.com/labforge/labforge/images"
	"github.com/labforge/labforge/internal/instance"
	"github.com/labforge/labforge/internal/paths"
	"github.com/labforge/labforge/internal/progress"
	"github.com/labforge/labforge/internal/sshx"
	"github.com/labforge/labforge/internal/virt"
	"github.com/labforge/labforge/verify"
)

// Driver is what Up needs of the machine: the image cache, a hypervisor
// and the guest's SSH. Real drives builder, libvirt and SSH; a fake lets
// the bring-up's order, failures and clean-up be tested without a guest.
type Driver interface {
	Build(ctx context.Context, spec *images.Spec, o BuildOptions, p *progress.Printer) (*builder.Result, error)
	// Connect reaches the hypervisor and says which accelerator runs
	// guests there, and why.
	Connect(ctx context.Context) (Hypervisor, virt.Accel, string, error)
	Verify(ctx context.Context, c *sshx.Client, s *verify.Suite, o verify.Options) *verify.Report
}

// Hypervisor is one connection to libvirt, as Up uses it.
type Hypervisor interface {
	Remote() bool
	// WarmState is the image's state to restore from, made when there
	// never was one (made: true); nil with a reason when none can be used.
	WarmState(ctx context.Context, spec *images.Spec, suite *verify.Suite, res *builder.Result, accel virt.Accel, bootTimeout time.Duration, p *progress.Printer) (snap *instance.Snapshot, why string, made bool, err error)
	Boot(ctx context.Context, o instance.UpOptions) (*instance.Instance, *sshx.Client, error)
	Restore(ctx context.Context, o instance.RestoreOptions) (*instance.Instance, *sshx.Client, error)
	Down(name string) error
	Close() error
}

// Real is the Driver of this machine: builder's cache, the system libvirtd.
var Real Driver = realDriver{}

type realDriver struct{}

func (realDriver) Build(ctx context.Context, spec *images.Spec, o BuildOptions, p *progress.Printer) (*builder.Result, error) {
	return Build(ctx, spec, o, p)
}

func (realDriver) Connect(ctx context.Context) (Hypervisor, virt.Accel, string, error) {
	conn, err := virt.Connect(ctx, true)
	if err != nil {
		return nil, "", "", err
	}
	accel, why := virt.ProbeAccel(ctx, paths.State())
	return libvirt{conn}, accel, why, nil
}

func (realDriver) Verify(ctx context.Context, c *sshx.Client, s *verify.Suite, o verify.Options) *verify.Report {
	return verify.Run(ctx, instance.RootRunner{Client: c}, s, o)
}

type libvirt struct{ *virt.Conn }

func (l libvirt) WarmState(ctx context.Context, spec *images.Spec, suite *verify.Suite, res *builder.Result, accel virt.Accel, bootTimeout time.Duration, p *progress.Printer) (*instance.Snapshot, string, bool, error) {
	return WarmState(ctx, l.Conn, spec, suite, res, accel, bootTimeout, p)
}

func (l libvirt) Boot(ctx context.Context, o instance.UpOptions) (*instance.Instance, *sshx.Client, error) {
	return instance.Up(ctx, l.Conn, o)
}

func (l libvirt) Restore(ctx context.Context, o instance.RestoreOptions) (*instance.Instance, *sshx.Client, error) {
	return instance.Restore(ctx, l.Conn, o)
}

func (l libvirt) Down(name string) error { return instance.Down(l.Conn, name) }
