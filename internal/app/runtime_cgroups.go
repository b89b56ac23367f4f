package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/berth-cri/berth/internal/cgroups"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/hostinfo"
	"github.com/berth-cri/berth/internal/panics"
)

// runtimeCgroupsPeriod is how often Docker's processes are looked for and
// put back in --runtime-cgroups, as cri-dockerd does: a restarted Docker
// is a new process, in whatever cgroup its starter gave it. Between two
// searches, every runtimeCgroupsCheck, a look at /proc tells whether the
// processes last moved are still there and in the cgroup: a Docker
// restarted faster than Berth's health probe notices is caught that way.
const (
	runtimeCgroupsPeriod = 5 * time.Minute
	runtimeCgroupsCheck  = 5 * time.Second
)

// placeRuntime makes the --runtime-cgroups cgroup (with cri-dockerd's
// memory limit) and moves Berth into it now; it then keeps the Docker
// daemon Berth talks to (dockerd and its containerd) there too, as
// cri-dockerd keeps Docker's: once Docker answers, whenever it comes back,
// and every runtimeCgroupsPeriod until ctx ends. An error means the cgroup
// cannot be made or Berth cannot join it; Docker's processes that cannot
// be moved are logged.
func placeRuntime(ctx context.Context, cfg config.Config, log *slog.Logger, d *docker.Client) error {
	if cfg.RuntimeCgroups == "" {
		return nil
	}
	name, err := cgroups.ResolveRuntimeName(cfg.RuntimeCgroups)
	if err != nil {
		return fmt.Errorf("--runtime-cgroups: %w", err)
	}
	total, err := cgroups.MemTotal()
	if err != nil {
		return fmt.Errorf("--runtime-cgroups: %w", err)
	}
	limit := cgroups.RuntimeMemoryLimit(total)
	g, warnings, err := cgroups.EnsureGroup(name, limit)
	for _, w := range warnings {
		log.Warn("the runtime cgroup is incomplete", "cgroup", name, "problem", w)
	}
	if err != nil {
		return fmt.Errorf("--runtime-cgroups: %w", err)
	}
	if err := g.Add(os.Getpid()); err != nil {
		return fmt.Errorf("--runtime-cgroups: moving Berth into %s: %w", name, err)
	}
	log.Info("running in the runtime cgroup", "cgroup", name, "memoryLimit", limit, "dirs", g.Dirs)

	socket := ""
	if u, err := url.Parse(cfg.DockerEndpoint); err == nil && u.Scheme == "unix" {
		socket = u.Path
	} else {
		log.Warn("--runtime-cgroups: Docker is not on a unix socket here, so its daemon is not moved into the runtime cgroup", "docker", cfg.DockerEndpoint)
	}
	if socket == "" {
		return nil
	}
	kick := make(chan struct{}, 1)
	d.OnHealthChange(func(h docker.Health) {
		if h.Ready {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
	// NOTE: a panic ends this loop (logged and counted); Berth keeps
	// serving, and Docker stays where the last round put it.
	panics.Go(ctx, panics.RuntimeCgroups, func() {
		search := time.NewTicker(runtimeCgroupsPeriod)
		defer search.Stop()
		check := time.NewTicker(runtimeCgroupsCheck)
		defer check.Stop()
		moved := map[int]bool{} // pids logged at info once
		var last []int          // pids the last search moved
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-search.C:
			case <-check.C:
				// Nothing moved yet (Docker away, or a move refused):
				// the next search or Docker's return retries, not
				// every check.
				if len(last) == 0 || allIn(g, last) {
					continue
				}
			}
			last = moveDocker(ctx, log, g, socket, moved)
		}
	})
	return nil
}

func allIn(g *cgroups.Group, pids []int) bool {
	for _, pid := range pids {
		if !g.Contains(pid) {
			return false
		}
	}
	return true
}

// moveDocker puts the Docker daemon behind socket into g and returns the
// pids it moved; moved holds the pids already logged.
func moveDocker(ctx context.Context, log *slog.Logger, g *cgroups.Group, socket string, moved map[int]bool) []int {
	procs, err := hostinfo.DockerProcesses(ctx, socket)
	if err != nil {
		log.Warn("--runtime-cgroups: cannot find Docker's processes; trying again later", "error", err)
		return nil
	}
	var pids []int
	for _, p := range procs {
		if err := g.Add(p.PID); err != nil {
			log.Warn("--runtime-cgroups: cannot move a Docker process into the runtime cgroup", "process", p.Name, "pid", p.PID, "error", err)
			continue
		}
		pids = append(pids, p.PID)
		if !moved[p.PID] {
			moved[p.PID] = true
			log.Info("Docker process in the runtime cgroup", "process", p.Name, "pid", p.PID, "cgroup", g.Name)
		}
	}
	return pids
}
