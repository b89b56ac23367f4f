// Package migrate moves this node's kubelet from its current container
// runtime (dockershim, cri-dockerd, or any other) to Berth, and back:
// cordon, drain (PodDisruptionBudgets honoured, DaemonSets ignored), rewrite
// kubelet's runtime endpoint wherever the node keeps it, update the kubeadm
// node annotation, restart kubelet, wait for the node to be Ready on the new
// runtime, uncordon. It prints its plan first, acts only when told to, and
// records every step in a state file so a rerun resumes and a rollback
// knows what to undo.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/kubectl/pkg/drain"

	"github.com/berth-cri/berth/internal/kubeletcfg"
	"github.com/berth-cri/berth/internal/sockdiag"
)

// CRISocketAnnotation is where kubeadm (before 1.27's kubelet-config based
// lookup) recorded a node's runtime endpoint; `kubeadm upgrade` reads it.
const CRISocketAnnotation = "kubeadm.alpha.kubernetes.io/cri-socket"

// DefaultStateFile is where the migration's progress is kept.
const DefaultStateFile = "/var/lib/berth/migrate-state.json"

// Options configure a migration or a rollback.
type Options struct {
	Client kubernetes.Interface
	// Node is this node's name in the cluster.
	Node string
	// Endpoint is Berth's CRI endpoint, which kubelet is moved to.
	Endpoint string
	// Kubelet says where kubelet's files are.
	Kubelet   kubeletcfg.Paths
	StateFile string
	// Systemctl is the systemctl command (looked up on PATH) and
	// KubeletUnit the unit it restarts.
	Systemctl   string
	KubeletUnit string
	// Drain settings, as kubectl drain's flags.
	Force              bool
	DeleteEmptyDirData bool
	GracePeriodSeconds int
	DrainTimeout       time.Duration
	// ReadyTimeout bounds the wait for the node to be Ready after kubelet
	// restarts.
	ReadyTimeout time.Duration
	// Yes acts; without it Run prints the plan and changes nothing.
	Yes bool
	// Rollback restores the endpoint the migration replaced.
	Rollback bool
	Out      io.Writer
}

// runner carries one run's state between steps.
type runner struct {
	opts     Options
	state    *State
	settings kubeletcfg.Settings
	edits    []fileEdit
	out      io.Writer
	// expect is the runtime version the node should report afterwards,
	// "name://version" as kubelet reports it.
	expect string
}

// step is one idempotent step of the procedure.
type step struct {
	name string
	// plan describes what the step will do (or did).
	plan func(ctx context.Context) string
	run  func(ctx context.Context) error
}

// Run prints the plan and, with opts.Yes, carries it out.
func Run(ctx context.Context, opts Options) error {
	r := &runner{opts: opts, out: opts.Out}
	if r.out == nil {
		r.out = os.Stdout
	}
	if opts.Systemctl == "" {
		r.opts.Systemctl = "systemctl"
	}
	if opts.KubeletUnit == "" {
		r.opts.KubeletUnit = "kubelet"
	}
	if opts.Kubelet.ProcRoot == "" {
		r.opts.Kubelet.ProcRoot = kubeletcfg.DefaultProcRoot
	}
	if opts.StateFile == "" {
		r.opts.StateFile = DefaultStateFile
	}
	state, err := loadState(r.opts.StateFile)
	if err != nil {
		return err
	}
	r.state = state
	r.settings, err = kubeletcfg.Discover(opts.Kubelet)
	if err != nil {
		return fmt.Errorf("reading kubelet's files: %w", err)
	}
	if opts.Rollback {
		return r.rollback(ctx)
	}
	return r.migrate(ctx)
}

func (r *runner) migrate(ctx context.Context) error {
	current, _ := r.settings.Endpoint()
	if r.state != nil && r.state.Node != r.opts.Node {
		return fmt.Errorf("state file %s is for node %q, not %q", r.opts.StateFile, r.state.Node, r.opts.Node)
	}
	if r.state != nil && r.state.Completed {
		fmt.Fprintf(r.out, "Node %s was migrated from %s to %s; nothing to do (berth migrate --rollback undoes it).\n", r.opts.Node, r.state.From, r.state.To)
		return nil
	}
	if r.state == nil && kubeletcfg.SameEndpoint(current, r.opts.Endpoint) {
		fmt.Fprintf(r.out, "kubelet on node %s already uses Berth (%s); nothing to do.\n", r.opts.Node, r.opts.Endpoint)
		return nil
	}
	if r.state == nil {
		r.state = &State{Version: stateVersion, Node: r.opts.Node, From: current, To: r.opts.Endpoint}
	}
	edits, err := planEdits(r.settings, r.opts.Endpoint, r.state)
	if err != nil {
		return err
	}
	r.edits = edits

	steps := []step{
		r.stepCheckRuntime(r.opts.Endpoint, "Berth"),
		r.stepCordon("cordon", &r.state.Migrated),
		r.stepDrain("drain", &r.state.Migrated),
		r.stepRewrite(),
		r.stepAnnotate(),
		r.stepRestart("restart-kubelet", &r.state.Migrated),
		r.stepWaitReady("wait-ready", &r.state.Migrated),
		r.stepUncordon("uncordon", &r.state.Migrated),
	}
	fmt.Fprintf(r.out, "Migrating node %s: kubelet's runtime endpoint %s → %s\n", r.opts.Node, orNone(r.state.From), r.opts.Endpoint)
	if err := r.execute(ctx, steps, &r.state.Migrated); err != nil {
		return err
	}
	if r.opts.Yes {
		r.state.Completed = true
		if err := saveState(r.opts.StateFile, r.state); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "Node %s now runs its pods through Berth. State: %s (berth migrate --rollback undoes it).\n", r.opts.Node, r.opts.StateFile)
	}
	return nil
}

func (r *runner) rollback(ctx context.Context) error {
	if r.state == nil {
		return fmt.Errorf("no migration to roll back: %s does not exist", r.opts.StateFile)
	}
	if r.state.Node != r.opts.Node {
		return fmt.Errorf("state file %s is for node %q, not %q", r.opts.StateFile, r.state.Node, r.opts.Node)
	}
	prev := r.state.From
	steps := []step{}
	if prev != "" {
		steps = append(steps, r.stepCheckRuntime(prev, "the previous runtime"))
	}
	steps = append(steps,
		r.stepCordon("cordon", &r.state.RolledBack),
		r.stepDrain("drain", &r.state.RolledBack),
		r.stepRestore(),
		r.stepRestoreAnnotation(),
		r.stepRestart("restart-kubelet", &r.state.RolledBack),
		r.stepWaitReady("wait-ready", &r.state.RolledBack),
		r.stepUncordon("uncordon", &r.state.RolledBack),
	)
	fmt.Fprintf(r.out, "Rolling node %s back: kubelet's runtime endpoint %s → %s\n", r.opts.Node, r.state.To, orNone(prev))
	if err := r.execute(ctx, steps, &r.state.RolledBack); err != nil {
		return err
	}
	if r.opts.Yes {
		for _, f := range r.state.Files {
			if f.Backup != "" {
				_ = os.Remove(f.Backup)
			}
		}
		if err := os.Remove(r.opts.StateFile); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "Node %s is back on %s; the migration's state and backups are removed.\n", r.opts.Node, orNone(prev))
	}
	return nil
}

// execute prints the plan, then (with Yes) runs each step not yet done,
// saving the state after each.
func (r *runner) execute(ctx context.Context, steps []step, done *[]string) error {
	fmt.Fprintln(r.out, "\nPlan:")
	for i, s := range steps {
		mark := " "
		if r.state.done(*done, s.name) {
			mark = "✓"
		}
		fmt.Fprintf(r.out, "  %s %d. %-16s %s\n", mark, i+1, s.name, s.plan(ctx))
	}
	if !r.opts.Yes {
		fmt.Fprintln(r.out, "\nDry run: nothing was changed. Run again with --yes to carry out the steps not marked done.")
		return nil
	}
	fmt.Fprintln(r.out)
	for i, s := range steps {
		if r.state.done(*done, s.name) {
			continue
		}
		fmt.Fprintf(r.out, "[%d/%d] %s\n", i+1, len(steps), s.name)
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("step %s: %w (fix the cause and run the same command again to resume)", s.name, err)
		}
		if s.name != "check-runtime" {
			*done = append(*done, s.name)
			if err := saveState(r.opts.StateFile, r.state); err != nil {
				return fmt.Errorf("saving state: %w", err)
			}
		}
	}
	return nil
}

func (r *runner) stepCheckRuntime(endpoint, what string) step {
	var version string
	var verr error
	checked := false
	check := func(ctx context.Context) {
		if !checked {
			version, verr = runtimeVersion(ctx, endpoint)
			checked = true
		}
	}
	return step{
		name: "check-runtime",
		plan: func(ctx context.Context) string {
			check(ctx)
			if verr != nil {
				return fmt.Sprintf("%s at %s does NOT answer: %v", what, endpoint, verr)
			}
			return fmt.Sprintf("%s answers at %s (%s)", what, endpoint, version)
		},
		run: func(ctx context.Context) error {
			check(ctx)
			if verr != nil {
				return fmt.Errorf("%s does not answer at %s: %w; start it first (systemctl enable --now berth.socket)", what, endpoint, verr)
			}
			r.expect = version
			return nil
		},
	}
}

// runtimeVersion asks the CRI runtime at endpoint for its version, and
// returns it as kubelet reports it in the node's status.
func runtimeVersion(ctx context.Context, endpoint string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	target := kubeletcfg.NormalizeEndpoint(endpoint)
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	v, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", err
	}
	return v.RuntimeName + "://" + v.RuntimeVersion, nil
}

func (r *runner) getNode(ctx context.Context) (*corev1.Node, error) {
	return r.opts.Client.CoreV1().Nodes().Get(ctx, r.opts.Node, metav1.GetOptions{})
}

func (r *runner) drainer(ctx context.Context) *drain.Helper {
	return &drain.Helper{
		Ctx:                  ctx,
		Client:               r.opts.Client,
		Force:                r.opts.Force,
		GracePeriodSeconds:   r.opts.GracePeriodSeconds,
		IgnoreAllDaemonSets:  true,
		DeleteEmptyDirData:   r.opts.DeleteEmptyDirData,
		Timeout:              r.opts.DrainTimeout,
		EvictErrorRetryDelay: 2 * time.Second,
		Out:                  r.out,
		ErrOut:               r.out,
	}
}

func (r *runner) stepCordon(name string, done *[]string) step {
	return step{
		name: name,
		plan: func(ctx context.Context) string {
			n, err := r.getNode(ctx)
			if err != nil {
				return fmt.Sprintf("mark node %s unschedulable (cannot read it now: %v)", r.opts.Node, err)
			}
			if n.Spec.Unschedulable && !r.state.done(*done, name) {
				return fmt.Sprintf("node %s is already cordoned; it stays cordoned afterwards", r.opts.Node)
			}
			return fmt.Sprintf("mark node %s unschedulable", r.opts.Node)
		},
		run: func(ctx context.Context) error {
			n, err := r.getNode(ctx)
			if err != nil {
				return err
			}
			if done == &r.state.Migrated {
				r.state.WasUnschedulable = n.Spec.Unschedulable
			}
			return drain.RunCordonOrUncordon(r.drainer(ctx), n, true)
		},
	}
}

func (r *runner) stepUncordon(name string, done *[]string) step {
	return step{
		name: name,
		plan: func(context.Context) string {
			if r.state.WasUnschedulable {
				return fmt.Sprintf("leave node %s cordoned, as it was before the migration", r.opts.Node)
			}
			return fmt.Sprintf("mark node %s schedulable again", r.opts.Node)
		},
		run: func(ctx context.Context) error {
			if r.state.WasUnschedulable {
				return nil
			}
			n, err := r.getNode(ctx)
			if err != nil {
				return err
			}
			return drain.RunCordonOrUncordon(r.drainer(ctx), n, false)
		},
	}
}

func (r *runner) stepDrain(name string, _ *[]string) step {
	return step{
		name: name,
		plan: func(ctx context.Context) string {
			list, errs := r.drainer(ctx).GetPodsForDeletion(r.opts.Node)
			if len(errs) > 0 {
				return fmt.Sprintf("evict the node's pods — cannot now: %v", errors.Join(errs...))
			}
			var names []string
			for _, p := range list.Pods() {
				names = append(names, p.Namespace+"/"+p.Name)
			}
			s := fmt.Sprintf("evict %d pod(s) through the eviction API, honouring PodDisruptionBudgets: %s", len(names), orNone(strings.Join(names, ", ")))
			if w := list.Warnings(); w != "" {
				s += "; " + w
			}
			return s
		},
		run: func(ctx context.Context) error {
			return drain.RunNodeDrain(r.drainer(ctx), r.opts.Node)
		},
	}
}

func (r *runner) stepAnnotate() step {
	return step{
		name: "annotate",
		plan: func(ctx context.Context) string {
			n, err := r.getNode(ctx)
			if err != nil {
				return fmt.Sprintf("set %s (cannot read the node now: %v)", CRISocketAnnotation, err)
			}
			v, ok := n.Annotations[CRISocketAnnotation]
			if !ok && r.state.Annotation == nil {
				return fmt.Sprintf("node has no %s annotation: nothing to update", CRISocketAnnotation)
			}
			return fmt.Sprintf("set annotation %s: %s → %s", CRISocketAnnotation, v, r.opts.Endpoint)
		},
		run: func(ctx context.Context) error {
			n, err := r.getNode(ctx)
			if err != nil {
				return err
			}
			v, ok := n.Annotations[CRISocketAnnotation]
			if !ok && r.state.Annotation == nil {
				return nil
			}
			if r.state.Annotation == nil {
				r.state.Annotation = &v
				if err := saveState(r.opts.StateFile, r.state); err != nil {
					return err
				}
			}
			return r.setAnnotation(ctx, &r.opts.Endpoint)
		},
	}
}

func (r *runner) stepRestoreAnnotation() step {
	return step{
		name: "annotate",
		plan: func(context.Context) string {
			if r.state.Annotation == nil {
				return "the migration did not touch the node's annotations: nothing to restore"
			}
			return fmt.Sprintf("set annotation %s back to %s", CRISocketAnnotation, *r.state.Annotation)
		},
		run: func(ctx context.Context) error {
			if r.state.Annotation == nil {
				return nil
			}
			return r.setAnnotation(ctx, r.state.Annotation)
		},
	}
}

func (r *runner) setAnnotation(ctx context.Context, value *string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, CRISocketAnnotation, *value)
	_, err := r.opts.Client.CoreV1().Nodes().Patch(ctx, r.opts.Node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

func (r *runner) stepRestart(name string, _ *[]string) step {
	return step{
		name: name,
		plan: func(context.Context) string {
			return fmt.Sprintf("%s restart %s", r.opts.Systemctl, r.opts.KubeletUnit)
		},
		run: func(ctx context.Context) error {
			r.state.RestartedAt = time.Now().UTC()
			if err := saveState(r.opts.StateFile, r.state); err != nil {
				return err
			}
			cmd := exec.CommandContext(ctx, r.opts.Systemctl, "restart", r.opts.KubeletUnit)
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s restart %s: %v: %s", r.opts.Systemctl, r.opts.KubeletUnit, err, strings.TrimSpace(string(out)))
			}
			return nil
		},
	}
}

func (r *runner) stepWaitReady(name string, _ *[]string) step {
	return step{
		name: name,
		plan: func(context.Context) string {
			return fmt.Sprintf("wait up to %s for node %s to report Ready, after the restart, with the runtime it now uses, and for kubelet to be connected to %s", r.opts.ReadyTimeout, r.opts.Node, orNone(r.targetEndpoint()))
		},
		run: func(ctx context.Context) error {
			if r.expect == "" {
				// Resumed after check-runtime: ask again.
				endpoint := r.opts.Endpoint
				if r.opts.Rollback {
					endpoint = r.state.From
				}
				if endpoint != "" {
					if v, err := runtimeVersion(ctx, endpoint); err == nil {
						r.expect = v
					}
				}
			}
			return r.waitReady(ctx)
		},
	}
}

// waitReady waits until the node's Ready condition is True with a heartbeat
// from after the restart (so it is the restarted kubelet speaking) and it
// reports the expected runtime.
func (r *runner) waitReady(ctx context.Context) error {
	timeout := r.opts.ReadyTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	since := r.state.RestartedAt.Truncate(time.Second)
	last := "no status yet"
	for {
		n, err := r.getNode(ctx)
		if err == nil {
			ok, why := nodeReadySince(n, since, r.expect)
			if ok {
				ok, why = kubeletConnected(r.opts.Kubelet.ProcRoot, r.targetEndpoint())
			}
			if ok {
				fmt.Fprintf(r.out, "node %s is Ready, runtime %s\n", r.opts.Node, n.Status.NodeInfo.ContainerRuntimeVersion)
				if why != "" {
					fmt.Fprintln(r.out, why)
				}
				return nil
			}
			last = why
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready on the new runtime within %s: %s (journalctl -u kubelet says why)", r.opts.Node, timeout, last)
		case <-time.After(time.Second):
		}
	}
}

// targetEndpoint is the endpoint kubelet is being moved to.
func (r *runner) targetEndpoint() string {
	if r.opts.Rollback {
		return r.state.From
	}
	return r.opts.Endpoint
}

// kubeletConnected reports whether a kubelet process on this host holds a
// connection to the socket of endpoint. The node's reported runtime cannot
// tell Berth from cri-dockerd (both report docker://<Docker's version>),
// but the connection can. With no kubelet process to look at (kubelet runs
// in a container, or procRoot is not the host's) it passes, saying why.
func kubeletConnected(procRoot, endpoint string) (bool, string) {
	path, ok := strings.CutPrefix(kubeletcfg.NormalizeEndpoint(endpoint), "unix://")
	if !ok {
		return true, ""
	}
	procs, err := kubeletcfg.FindProcesses(procRoot, "kubelet")
	if err != nil || len(procs) == 0 {
		return true, fmt.Sprintf("note: no kubelet process under %s, so its connection to %s was not checked", procRoot, path)
	}
	holders, err := sockdiag.Holders(procRoot, path)
	if err != nil {
		return true, fmt.Sprintf("note: cannot list connections to %s (%v), so kubelet's was not checked", path, err)
	}
	for _, h := range holders {
		if h.Comm == "kubelet" && !h.Serving {
			return true, fmt.Sprintf("kubelet (pid %d) is connected to %s", h.PID, path)
		}
	}
	return false, fmt.Sprintf("kubelet (pid %d) has no connection to %s", procs[0].PID, path)
}

// nodeReadySince reports whether n is Ready with a heartbeat at or after
// since and, if expect is set, reports runtime expect.
func nodeReadySince(n *corev1.Node, since time.Time, expect string) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			return false, fmt.Sprintf("Ready is %s: %s", c.Status, c.Message)
		}
		if c.LastHeartbeatTime.Time.Before(since) {
			return false, fmt.Sprintf("no status from kubelet since its restart at %s (last heartbeat %s)", since.Format(time.RFC3339), c.LastHeartbeatTime.Format(time.RFC3339))
		}
		if got := n.Status.NodeInfo.ContainerRuntimeVersion; expect != "" && got != expect {
			return false, fmt.Sprintf("node reports runtime %q, expected %q", got, expect)
		}
		return true, ""
	}
	return false, "node has no Ready condition"
}

func (r *runner) stepRewrite() step {
	return step{
		name: "rewrite",
		plan: func(context.Context) string {
			var parts []string
			for _, e := range r.edits {
				parts = append(parts, e.describe())
			}
			if len(parts) == 0 {
				return "kubelet's files already name Berth"
			}
			return strings.Join(parts, "; ")
		},
		run: func(context.Context) error {
			save := func() error { return saveState(r.opts.StateFile, r.state) }
			for _, e := range r.edits {
				if err := e.apply(r.state, save); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (r *runner) stepRestore() step {
	return step{
		name: "restore-files",
		plan: func(context.Context) string {
			var parts []string
			for _, f := range r.state.Files {
				if f.Backup == "" {
					parts = append(parts, "remove "+f.Path+" (the migration created it)")
				} else {
					parts = append(parts, "restore "+f.Path+" from "+f.Backup)
				}
			}
			if len(parts) == 0 {
				return "the migration changed no files"
			}
			return strings.Join(parts, "; ")
		},
		run: func(context.Context) error {
			for _, f := range r.state.Files {
				if f.Backup == "" {
					if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
						return err
					}
					continue
				}
				data, err := os.ReadFile(f.Backup)
				if err != nil {
					return fmt.Errorf("backup of %s: %w", f.Path, err)
				}
				if err := kubeletcfg.WriteFileAtomic(f.Path, data); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
