package torture

import (
	"fmt"
	"os"
	"time"
)

// Scale sizes every scenario. CI scale keeps the whole suite to a few
// minutes on a two-core machine; full scale is what the issue asks Berth to
// survive.
type Scale struct {
	Name string
	// KillPods pods are created and deleted concurrently while Berth is
	// killed (SIGKILL) Kills times at random points.
	KillPods int
	Kills    int
	// KillWorkers is how many pods are in flight at once.
	KillWorkers int
	// DockerRestartPods run (each with a container) while Docker restarts.
	DockerRestartPods int
	// FaultRounds repeats each injected fault.
	FaultRounds int
	// Clients do mixed RPCs for ClientDuration.
	Clients        int
	ClientDuration time.Duration
	// Cycles pod create/delete cycles (with a container each) measure RSS;
	// WarmupCycles run before the first measurement.
	Cycles       int
	WarmupCycles int
	// CycleWorkers run the cycles side by side.
	CycleWorkers int
	// GarbageConns connections write junk to the CRI socket.
	GarbageConns int
}

var scales = map[string]Scale{
	"ci": {
		Name:     "ci",
		KillPods: 8, Kills: 2, KillWorkers: 4,
		DockerRestartPods: 2,
		FaultRounds:       1,
		Clients:           8, ClientDuration: 20 * time.Second,
		Cycles: 24, WarmupCycles: 6, CycleWorkers: 4,
		GarbageConns: 20,
	},
	"full": {
		Name:     "full",
		KillPods: 50, Kills: 10, KillWorkers: 10,
		DockerRestartPods: 10,
		FaultRounds:       5,
		Clients:           100, ClientDuration: 10 * time.Minute,
		Cycles: 1000, WarmupCycles: 100, CycleWorkers: 4,
		GarbageConns: 200,
	},
}

// scale is the size this run uses (TORTURE_SCALE, default ci).
var scale = scales["ci"]

func scaleFromEnv() (Scale, error) {
	name := os.Getenv("TORTURE_SCALE")
	if name == "" {
		name = "ci"
	}
	s, ok := scales[name]
	if !ok {
		return Scale{}, fmt.Errorf("TORTURE_SCALE=%q: want ci or full", name)
	}
	if d := os.Getenv("TORTURE_CLIENT_DURATION"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil {
			return Scale{}, fmt.Errorf("TORTURE_CLIENT_DURATION: %v", err)
		}
		s.ClientDuration = v
	}
	return s, nil
}
