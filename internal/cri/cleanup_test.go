package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/api/types/container"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/store"
)

// What a RunPodSandbox or CreateContainer that fails half-way leaves: the
// steps done before the failure are undone, last first, and nothing of
// the object stays in Docker, in --root-dir or in the index. A real Docker
// cannot be made to fail at each step on demand (a start that fails after
// a create that worked, an inspect that fails right after a start), so
// Docker is faked at the calls these RPCs make; the checkpoints are real
// files in a temporary directory; CNI is a fake that records ADD and DEL.

// fakeEngine is Docker for RunPodSandbox and CreateContainer: it keeps the
// containers created, records every call in order, and fails the calls
// named in fail. The rest of Docker answers Unavailable (downBackend).
type fakeEngine struct {
	downBackend

	mu         sync.Mutex // guards the fields below
	fail       map[string]error
	calls      []string
	containers map[string]*fakeContainer
	next       int
	// exitAtStart makes a started container exit at once.
	exitAtStart bool
	// leftover is a container name Docker has that the index does not:
	// creates under it fail with AlreadyExists until it is removed.
	leftover string
	// inFlight is how many removes of the leftover answer NotFound first:
	// a create that a killed Berth left running holds the name.
	inFlight int
}

type fakeContainer struct {
	spec    dockerspec.CreateSpec
	running bool
}

func newFakeEngine(root string) *fakeEngine {
	return &fakeEngine{downBackend: downBackend{dockerRoot: root}, fail: map[string]error{}, containers: map[string]*fakeContainer{}}
}

// call records a call and returns its injected error.
func (f *fakeEngine) call(format string, args ...any) error {
	c := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, c)
	verb, _, _ := strings.Cut(c, " ")
	return f.fail[verb]
}

func (f *fakeEngine) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeEngine) left() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.containers {
		out = append(out, id)
	}
	return out
}

// ImageLayers says the sandbox image is present (and not Berth's own
// pause program), so no pull or build happens.
func (f *fakeEngine) ImageLayers(context.Context, string) ([]string, error) {
	return []string{"sha256:" + id64('c')}, nil
}

func (f *fakeEngine) CreateContainer(_ context.Context, name string, cfg *container.Config, hc *container.HostConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("create %s", name); err != nil {
		return "", err
	}
	if name == f.leftover {
		return "", fmt.Errorf("test: the name %s is in use: %w", name, errdefs.ErrAlreadyExists)
	}
	f.next++
	id := id64(byte('a' + f.next))
	f.containers[id] = &fakeContainer{spec: dockerspec.CreateSpec{Name: name, Config: cfg, HostConfig: hc}}
	return id, nil
}

func (f *fakeEngine) StartContainer(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("start %s", id[:4]); err != nil {
		return err
	}
	f.containers[id].running = !f.exitAtStart
	return nil
}

func (f *fakeEngine) InspectContainer(_ context.Context, id string) (container.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("inspect %s", id[:4]); err != nil {
		return container.InspectResponse{}, err
	}
	c, ok := f.containers[id]
	if !ok {
		return container.InspectResponse{}, errdefs.NotFound("container", id)
	}
	in := inspectOf(id, &c.spec, runState(c.running))
	if c.running {
		// A process that exists, so its network namespace path does.
		in.State.Pid = os.Getpid()
	}
	return in, nil
}

func (f *fakeEngine) RemoveContainer(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ref) == 64 {
		if err := f.call("remove %s", ref[:4]); err != nil {
			return err
		}
		if _, ok := f.containers[ref]; !ok {
			return errdefs.NotFound("container", ref)
		}
		delete(f.containers, ref)
		return nil
	}
	// By name: the leftover.
	if err := f.call("remove %s", ref); err != nil {
		return err
	}
	if f.inFlight > 0 {
		f.inFlight--
		return errdefs.NotFound("container", ref)
	}
	if ref == f.leftover {
		f.leftover = ""
	}
	return nil
}

func (f *fakeEngine) StatPath(context.Context, string, string) (container.PathStat, error) {
	return container.PathStat{}, nil
}

// runNetwork is CNI for RunPodSandbox: ADD fails with addErr.
type runNetwork struct {
	fakeNetwork
	addErr error
	adds   int
}

func (n *runNetwork) Add(_ context.Context, _ string, a *network.Attachment) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.adds++
	if n.addErr != nil {
		return n.addErr
	}
	a.IPs = []string{"10.88.0.2"}
	return nil
}

// cleanupService is a Service on eng and net, with real checkpoints under
// a temporary root directory.
func cleanupService(t *testing.T, eng *fakeEngine, net Network) (*Service, *checkpoint.Store) {
	t.Helper()
	cfg := config.Default()
	cfg.RootDir = t.TempDir()
	// Not Berth's own pause image: present as Docker reports it.
	cfg.PodInfraContainerImage = "registry.example/pause:3.10"
	cps, err := checkpoint.Open(cfg.RootDir + "/sandboxes")
	if err != nil {
		t.Fatal(err)
	}
	logs := &fakeLogs{follow: map[string]bool{}}
	s := New(Deps{
		Config: cfg, Daemon: eng, Docker: eng, Network: net, Checkpoints: cps, Store: store.New(),
		Logs: logs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Images: eng, Streams: eng, Exec: eng,
	})
	return s, cps
}

func TestRunPodSandboxUndoesWhatItDidWhenAStepFails(t *testing.T) {
	errBoom := fmt.Errorf("test: injected: %w", errdefs.ErrUnavailable)
	const pause = "bbbb" // the first container's id, shortened
	for _, tc := range []struct {
		name        string
		bridge      bool // Docker-bridge mode (no CNI)
		fail        string
		exitAtStart bool
		addErr      error
		leftover    bool
		inFlight    int
		// noRecords makes every checkpoint write fail.
		noRecords bool
		wantErr   error
		// wantCalls are Docker's calls, in order; wantAdds and wantDels
		// count CNI's.
		wantCalls          []string
		wantAdds, wantDels int
	}{{
		name: "create fails", fail: "create", wantErr: errdefs.ErrUnavailable,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0"},
	}, {
		name: "start fails", fail: "start", wantErr: errdefs.ErrUnavailable,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "start " + pause, "remove " + pause},
	}, {
		name: "inspect fails", fail: "inspect", wantErr: errdefs.ErrUnavailable,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "start " + pause, "inspect " + pause, "remove " + pause},
	}, {
		name: "the pause container exits at once", exitAtStart: true, wantErr: errdefs.ErrInternal,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "start " + pause, "inspect " + pause, "remove " + pause},
	}, {
		name: "the record cannot be written", noRecords: true, wantErr: errdefs.ErrInternal,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "start " + pause, "inspect " + pause, "remove " + pause},
	}, {
		name: "the record cannot be written, bridge", bridge: true, noRecords: true, wantErr: errdefs.ErrInternal,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "start " + pause, "inspect " + pause, "remove " + pause},
	}, {
		name: "CNI ADD fails", addErr: errors.New("test: no IP left"), wantErr: errdefs.ErrUnavailable,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "start " + pause, "inspect " + pause, "remove " + pause},
		wantAdds:  1, wantDels: 1,
	}, {
		name:      "success",
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "start " + pause, "inspect " + pause},
		wantAdds:  1,
	}, {
		name: "success over a leftover container of the name", leftover: true,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "remove k8s_POD_p_ns_uid-p_0", "create k8s_POD_p_ns_uid-p_0",
			"start " + pause, "inspect " + pause},
		wantAdds: 1,
	}, {
		name: "success over a leftover whose create is still in flight", leftover: true, inFlight: 2,
		wantCalls: []string{"create k8s_POD_p_ns_uid-p_0", "remove k8s_POD_p_ns_uid-p_0",
			"create k8s_POD_p_ns_uid-p_0", "remove k8s_POD_p_ns_uid-p_0",
			"create k8s_POD_p_ns_uid-p_0", "remove k8s_POD_p_ns_uid-p_0", "create k8s_POD_p_ns_uid-p_0",
			"start " + pause, "inspect " + pause},
		wantAdds: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			eng := newFakeEngine(t.TempDir())
			if tc.fail != "" {
				eng.fail[tc.fail] = errBoom
			}
			eng.exitAtStart = tc.exitAtStart
			if tc.leftover {
				eng.leftover = "k8s_POD_p_ns_uid-p_0"
				eng.inFlight = tc.inFlight
			}
			net := &runNetwork{fakeNetwork: fakeNetwork{cni: !tc.bridge}, addErr: tc.addErr}
			s, cps := cleanupService(t, eng, net)
			if tc.noRecords {
				if err := os.RemoveAll(s.cfg.RootDir + "/sandboxes"); err != nil {
					t.Fatal(err)
				}
			}
			resp, err := s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p", false)})
			t.Logf("RunPodSandbox: %v", err)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("RunPodSandbox: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("RunPodSandbox: %v, want %v", err, tc.wantErr)
			}
			if got := eng.log(); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("Docker's calls:\n got %q\nwant %q", got, tc.wantCalls)
			}
			if net.adds != tc.wantAdds || len(net.calls()) != tc.wantDels {
				t.Errorf("CNI: %d ADD, %d DEL; want %d, %d", net.adds, len(net.calls()), tc.wantAdds, tc.wantDels)
			}
			// A DEL undoes the ADD: same sandbox, same configuration, in
			// the pause container's namespace while it still runs.
			wantDel := delCall{sandbox: id64('b'), netns: fmt.Sprintf("/proc/%d/ns/net", os.Getpid()), confList: `{"name":"current"}`}
			for _, d := range net.calls() {
				if d != wantDel {
					t.Errorf("CNI DEL %+v, want %+v", d, wantDel)
				}
			}
			ids, _ := cps.IDs()
			sandboxes := s.store.Sandboxes(nil)
			if tc.wantErr != nil {
				// Nothing of the pod is left anywhere.
				if left := eng.left(); len(left) > 0 {
					t.Errorf("containers left in Docker: %v", shortIDs(left))
				}
				if len(ids) > 0 {
					t.Errorf("records left: %v", shortIDs(ids))
				}
				if len(sandboxes) > 0 {
					t.Errorf("sandboxes left in the index: %v", sandboxes)
				}
				if s.guard.runs.running("k8s_POD_p_ns_uid-p_0") {
					t.Errorf("the name is still reserved")
				}
				return
			}
			if len(sandboxes) != 1 || sandboxes[0].ID != resp.GetPodSandboxId() || !sandboxes[0].NetworkReady {
				t.Fatalf("index: %+v, want the ready sandbox %s", sandboxes, resp.GetPodSandboxId())
			}
			cp, err := cps.Load(resp.GetPodSandboxId())
			if err != nil || cp.Network == nil || cp.Network.State != checkpoint.StateUp {
				t.Errorf("record: %+v, %v; want one with its network up", cp, err)
			}
		})
	}
}

func TestCreateContainerUndoesWhatItDidWhenAStepFails(t *testing.T) {
	errBoom := fmt.Errorf("test: injected: %w", errdefs.ErrUnavailable)
	for _, tc := range []struct {
		name      string
		fail      string
		wantErr   error
		wantCalls []string
	}{{
		name: "create fails", fail: "create", wantErr: errdefs.ErrUnavailable,
		wantCalls: []string{"create k8s_c_p_ns_uid-p_0"},
	}, {
		name: "inspect fails", fail: "inspect", wantErr: errdefs.ErrUnavailable,
		wantCalls: []string{"create k8s_c_p_ns_uid-p_0", "inspect bbbb", "remove bbbb"},
	}, {
		name:      "success",
		wantCalls: []string{"create k8s_c_p_ns_uid-p_0", "inspect bbbb"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			eng := newFakeEngine(t.TempDir())
			if tc.fail != "" {
				eng.fail[tc.fail] = errBoom
			}
			s, _ := cleanupService(t, eng, &runNetwork{fakeNetwork: fakeNetwork{cni: true}})
			pod := podConfig("p", false)
			s.store.PutSandbox(&store.Sandbox{
				ID: podA, Name: dockerspec.SandboxName(pod.GetMetadata()), Metadata: pod.GetMetadata(),
				LogDirectory: pod.GetLogDirectory(), Namespaces: pod.GetLinux().GetSecurityContext().GetNamespaceOptions(),
				Labels: map[string]string{}, Annotations: map[string]string{},
				Running: true, Pid: noPid, NetworkReady: true, Owned: true,
			})
			cfg := &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
				Image:    &runtimeapi.ImageSpec{Image: "busybox:latest"},
				Command:  []string{"sleep", "3600"},
				LogPath:  "c/0.log",
			}
			resp, err := s.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podA, Config: cfg, SandboxConfig: pod})
			t.Logf("CreateContainer: %v", err)
			if tc.wantErr == nil && err != nil {
				t.Fatalf("CreateContainer: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("CreateContainer: %v, want %v", err, tc.wantErr)
			}
			if got := eng.log(); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("Docker's calls:\n got %q\nwant %q", got, tc.wantCalls)
			}
			containers := s.store.Containers(nil)
			if tc.wantErr != nil {
				if left := eng.left(); len(left) > 0 {
					t.Errorf("containers left in Docker: %v", shortIDs(left))
				}
				if len(containers) > 0 {
					t.Errorf("containers left in the index: %v", containers)
				}
				if s.guard.runs.running("k8s_c_p_ns_uid-p_0") {
					t.Errorf("the name is still reserved")
				}
				return
			}
			if len(containers) != 1 || containers[0].ID != resp.GetContainerId() {
				t.Errorf("index: %+v, want the container %s", containers, resp.GetContainerId())
			}
		})
	}
}
