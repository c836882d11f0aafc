package instance

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/labforge/labforge/labs"
)

// CourseHost is a lab host as the course's commands drive it: an
// instance over SSH, or this machine (inside the lab host, from the
// student's `labs` command).
type CourseHost struct {
	Host  labs.Host
	Env   labs.Env
	Name  string // in reports: the instance's, or "localhost"
	local bool
	close func()
}

// OpenCourseHost connects, as root, to the instance called name, or with
// local is this machine, which must be run as root: the exercises'
// scripts and checks need it. Close ends the connection.
func OpenCourseHost(ctx context.Context, name string, local bool) (*CourseHost, error) {
	if local {
		if os.Geteuid() != 0 {
			return nil, errors.New("--local runs the exercise's scripts and checks as root: use sudo")
		}
		return &CourseHost{Host: labs.LocalHost{}, Name: "localhost", local: true}, nil
	}
	inst, err := Load(name)
	if err != nil {
		return nil, err
	}
	client, err := inst.Dial(ctx, time.Minute)
	if err != nil {
		return nil, err
	}
	return &CourseHost{Host: RootRunner{Client: client}, Env: labs.Env{User: inst.User}, Name: name,
		close: func() { client.Close() }}, nil
}

// Close ends the connection to the host, if any.
func (h *CourseHost) Close() {
	if h.close != nil {
		h.close()
	}
}

// Start sets exercise e of course c up and returns what its setup printed.
// On an instance it installs the course and its program first (the
// student's `labs` command runs them); inside the host they are there.
func (h *CourseHost) Start(ctx context.Context, c *labs.Course, e *labs.Exercise) (string, error) {
	if !h.local {
		self, err := labs.CourseProgram()
		if err != nil {
			return "", err
		}
		if err := labs.Install(ctx, h.Host, c, h.Env, self); err != nil {
			return "", err
		}
	}
	return h.Env.Start(ctx, h.Host, e)
}
