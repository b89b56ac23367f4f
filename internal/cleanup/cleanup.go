// Package cleanup is a named undo stack: an operation that builds something
// in steps pushes the undo of each step, and on failure the undos run last
// in, first out, each named in the log, under a fresh context so they run
// even after the request that started the operation was cancelled.
package cleanup

import (
	"context"
	"log/slog"
	"time"
)

// Timeout bounds each undo step.
const Timeout = 2 * time.Minute

type step struct {
	name string
	fn   func(ctx context.Context) error
}

// Stack holds undo steps. The zero value is ready to use.
type Stack struct {
	steps []step
}

// Push adds the undo of a step that just succeeded.
func (s *Stack) Push(name string, fn func(ctx context.Context) error) {
	s.steps = append(s.steps, step{name: name, fn: fn})
}

// Release forgets every step: the operation succeeded.
func (s *Stack) Release() { s.steps = nil }

// Run runs every step, last pushed first, and returns the number that
// failed. A failing step is logged and does not stop the others.
func (s *Stack) Run(log *slog.Logger) int {
	failed := 0
	for i := len(s.steps) - 1; i >= 0; i-- {
		st := s.steps[i]
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		err := st.fn(ctx)
		cancel()
		if err != nil {
			failed++
			log.Error("cleanup step failed", "step", st.name, "error", err)
		} else {
			log.Debug("cleaned up", "step", st.name)
		}
	}
	s.steps = nil
	return failed
}
