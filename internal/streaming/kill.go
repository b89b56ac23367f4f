package streaming

import (
	"context"
	"time"

	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/process"
	"github.com/berth-cri/berth/internal/store"
)

// killExec kills an exec's process and everything it started. Docker has
// no API for that: Berth asks Docker for the process's host pid and kills
// its session through /proc (internal/process). It runs on a context of
// its own, since it runs when the caller's has ended.
func (r *Runtime) killExec(execID string, c *store.Container) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A process being started has no pid yet: wait for it a little.
	var st docker.ExecState
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		st, err = r.docker.InspectExec(ctx, execID)
		if err != nil || !st.Running || st.Pid != 0 {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err != nil {
		r.log.Warn("cannot find an abandoned exec's process to kill it", "container", dockerspec.ShortID(c.ID), "exec", dockerspec.ShortID(execID), "error", err)
		return
	}
	if !st.Running || st.Pid == 0 {
		return
	}
	// The exec runs in the container's pid namespace; the container's own
	// process names it. Without it (a racing exit), the exec's process
	// names its own, read now.
	ns, nsErr := process.PidNamespace(c.Pid)
	if c.Pid == 0 || nsErr != nil {
		ns, nsErr = process.PidNamespace(st.Pid)
		if nsErr != nil {
			return // gone already
		}
	}
	n, err := process.KillSession(st.Pid, ns)
	if err != nil {
		r.log.Warn("killing an abandoned exec", "container", dockerspec.ShortID(c.ID), "exec", dockerspec.ShortID(execID), "pid", st.Pid, "error", err)
		return
	}
	r.log.Debug("killed an abandoned exec", "container", dockerspec.ShortID(c.ID), "exec", dockerspec.ShortID(execID), "pid", st.Pid, "signalled", n)
}
