package instance

import (
	"context"
	"time"

	"github.com/labforge/labforge/labs"
)

// CourseHost is a lab host as labforge's course commands drive it: an
// instance over SSH. (Inside the host, the student's `labs` runs
// labforge-labs, labs.GuestMain.)
type CourseHost struct {
	Host  labs.Host
	Env   labs.Env
	Name  string // the instance's, in reports
	close func()
}

// OpenCourseHost connects, as root, to the instance called name: the
// exercises' scripts and checks need it. Close ends the connection.
func OpenCourseHost(ctx context.Context, name string) (*CourseHost, error) {
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
// It installs the course and its program first (the student's `labs`
// runs them), so that the host has this labforge's course.
func (h *CourseHost) Start(ctx context.Context, c *labs.Course, e *labs.Exercise) (string, error) {
	prog, err := labs.CourseProgram()
	if err != nil {
		return "", err
	}
	if err := labs.Install(ctx, h.Host, c, h.Env, prog); err != nil {
		return "", err
	}
	return h.Env.Start(ctx, h.Host, e)
}
