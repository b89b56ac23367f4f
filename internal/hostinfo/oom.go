package hostinfo

import (
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/berth-cri/berth/internal/dockerspec"
)

// capSysResource is CAP_SYS_RESOURCE's bit in the capability sets.
const capSysResource = 24

// OOMPolicy decides whether negative oom_score_adj values must be clamped.
// Lowering a process's OOM score takes CAP_SYS_RESOURCE; on hosts where no
// process has it in its bounding set (some VMs, rootless set-ups, these
// test machines) runc fails every container asking for a lower score than
// its parent's, with an opaque error. As containerd's
// restrict_oom_score_adj does, Berth then raises such values to the lowest
// one allowed: the score the runtime itself runs with.
func OOMPolicy(mode string, log *slog.Logger) dockerspec.OOMPolicy {
	own := ownOOMScoreAdj()
	switch mode {
	case "exact":
		return dockerspec.OOMPolicy{}
	case "clamp":
		return dockerspec.OOMPolicy{Clamp: true, Min: own}
	}
	if HasCapability(capSysResource) {
		return dockerspec.OOMPolicy{}
	}
	log.Warn("this host cannot lower OOM scores (CAP_SYS_RESOURCE is not in the capability bounding set): negative oom_score_adj values are raised to the lowest allowed",
		"lowest", own, "flag", "--oom-score-adj-policy")
	return dockerspec.OOMPolicy{Clamp: true, Min: own}
}

func ownOOMScoreAdj() int {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	return v
}
