package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/api/types/container"
	mobynetwork "github.com/moby/moby/api/types/network"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/checkpoint"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/network"
	"github.com/berth-cri/berth/internal/store"
)

// What start-up recovery (recover.go) makes of what Docker lists and what
// checkpoints --root-dir holds. Docker is faked at the two calls recovery
// makes (Inventory); the checkpoints are real files in a temporary
// directory; CNI and the log forwarder are fakes that record what they are
// asked. The Service has no full Docker client: a call recovery has no
// business making panics the test.

// recoverCase is one start-up (or resync after a break in Docker's event
// stream): what exists, and what the index must hold afterwards.
type recoverCase struct {
	name string
	// docker is what Docker lists: each container's inspect output.
	docker []container.InspectResponse
	// vanish are listed but gone when inspected; inspectErr fail to inspect.
	vanish     []string
	inspectErr []string
	listErr    error
	// checkpoints are the records under --root-dir; rawCheckpoints are
	// files written as they are (corrupt records), by sandbox id.
	checkpoints    []*checkpoint.Sandbox
	rawCheckpoints map[string]string
	// noCheckpointDir removes the checkpoint directory before recovery.
	noCheckpointDir bool
	// bridge is Docker-bridge mode (no CNI).
	bridge bool
	// cached are the IPs libcni cached for sandboxes another runtime set up.
	cached map[string][]string
	delErr error
	// indexed are records from before (a resync, not a start-up);
	// inFlight are names a RunPodSandbox or CreateContainer is making.
	indexed  func(*store.Store)
	inFlight []string

	wantErr error
	// The whole index afterwards, by id.
	wantSandboxes   map[string]wantSandbox
	wantContainers  map[string]wantContainer
	wantDel         []delCall
	wantCheckpoints map[string]string // sandbox id → network state of its record ("" without one)
	wantFollow      []string          // containers whose logs Berth forwards
}

type wantSandbox struct {
	name                   string
	network                bool // NetworkReady
	owned, adopted         bool
	gone, corrupt, running bool
	ips                    []string
	netns                  string
	// labels and annotations, when not nil, are the CRI ones.
	labels, annotations map[string]string
}

type wantContainer struct {
	name           string
	sandbox        string
	state          runtimeapi.ContainerState
	attempt        uint32
	owned, adopted bool
}

type delCall struct {
	sandbox, netns, confList string
}

// thisRoot is the --root-dir of the Berth under test; otherRoot another
// Berth's on the same Docker.
const (
	thisRoot  = "/var/lib/berth-under-test"
	otherRoot = "/var/lib/another-berth"
)

func id64(c byte) string { return strings.Repeat(string(c), 64) }

var (
	podA, podB, podG, podH, podK = id64('a'), id64('b'), id64('9'), id64('8'), id64('7')
	podD, podO, podN, podR       = id64('d'), id64('0'), id64('1'), id64('2')
	ctrA, ctrB, ctrD, ctrO, ctrR = id64('e'), id64('f'), id64('3'), id64('4'), id64('5')
	ctrX                         = id64('6')
)

func TestRecoverIndexesWhatDockerHas(t *testing.T) {
	mine := podConfig("a", false)
	runRecoverCases(t, []recoverCase{
		{
			name: "this Berth's running pod and container, network from the checkpoint",
			docker: []container.InspectResponse{
				berthSandbox(t, podA, thisRoot, mine, running),
				berthContainer(t, ctrA, thisRoot, podA, mine, "app", running),
			},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podA, mine, checkpoint.StateUp)},
			wantSandboxes: map[string]wantSandbox{podA: {
				name: "k8s_POD_a_ns_uid-a_0", network: true, owned: true, running: true,
				ips: []string{"10.88.0.10"}, netns: "/var/run/netns/cni-" + podA[:8],
				labels: map[string]string{"app": "a"}, annotations: map[string]string{"note": "a"},
			}},
			wantContainers: map[string]wantContainer{ctrA: {
				name: "k8s_app_a_ns_uid-a_0", sandbox: podA, state: runtimeapi.ContainerState_CONTAINER_RUNNING, owned: true,
			}},
			wantCheckpoints: map[string]string{podA: checkpoint.StateUp},
			wantFollow:      []string{ctrA},
		},
		{
			name: "pause container exited while Berth was down: NOTREADY, network left for StopPodSandbox",
			docker: []container.InspectResponse{
				berthSandbox(t, podB, thisRoot, podConfig("b", false), exited),
				berthContainer(t, ctrB, thisRoot, podB, podConfig("b", false), "app", exited),
			},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podB, podConfig("b", false), checkpoint.StateUp)},
			wantSandboxes: map[string]wantSandbox{podB: {
				name: "k8s_POD_b_ns_uid-b_0", owned: true, ips: []string{"10.88.0.10"}, netns: "/var/run/netns/cni-" + podB[:8],
			}},
			wantContainers: map[string]wantContainer{ctrB: {
				name: "k8s_app_b_ns_uid-b_0", sandbox: podB, state: runtimeapi.ContainerState_CONTAINER_EXITED, owned: true,
			}},
			wantCheckpoints: map[string]string{podB: checkpoint.StateUp},
			wantFollow:      []string{ctrB},
		},
		{
			name: "this Berth died before writing the checkpoint: no network was set up",
			docker: []container.InspectResponse{
				berthSandbox(t, podA, thisRoot, mine, running),
				berthSandbox(t, podH, thisRoot, podConfig("h", true), running),
			},
			wantSandboxes: map[string]wantSandbox{
				podA: {name: "k8s_POD_a_ns_uid-a_0", owned: true, running: true},
				podH: {name: "k8s_POD_h_ns_uid-h_0", owned: true, running: true, network: true},
			},
		},
		{
			name: "a checkpoint without a CNI network: ready in host network only",
			docker: []container.InspectResponse{
				berthSandbox(t, podA, thisRoot, mine, running),
				berthSandbox(t, podH, thisRoot, podConfig("h", true), running),
			},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podA, mine, ""), checkpointOf(podH, podConfig("h", true), "")},
			wantSandboxes: map[string]wantSandbox{
				podA: {name: "k8s_POD_a_ns_uid-a_0", owned: true, running: true},
				podH: {name: "k8s_POD_h_ns_uid-h_0", owned: true, running: true, network: true},
			},
			wantCheckpoints: map[string]string{podA: "", podH: ""},
		},
		{
			name: "corrupt checkpoint of a running pod: quarantined, marked, NOTREADY",
			docker: []container.InspectResponse{
				berthSandbox(t, podK, thisRoot, podConfig("k", false), running),
			},
			rawCheckpoints: map[string]string{podK: `{"version":1,"checksum":"sha256:00","data":{}}`},
			wantSandboxes: map[string]wantSandbox{podK: {
				name: "k8s_POD_k_ns_uid-k_0", owned: true, running: true, corrupt: true,
			}},
		},
		{
			name: "cri-dockerd's (dockershim's) pod and container are adopted from their names and labels",
			docker: []container.InspectResponse{
				criDockerdSandbox(podD, "web", running),
				criDockerdContainer(ctrD, podD, "web", "nginx", 2, running),
			},
			cached: map[string][]string{podD: {"10.88.0.99"}},
			wantSandboxes: map[string]wantSandbox{podD: {
				name: "k8s_POD_web_default_uid-web_1", network: true, adopted: true, running: true, ips: []string{"10.88.0.99"},
				labels: map[string]string{
					"app": "web", "io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": "uid-web",
				},
				annotations: map[string]string{"kubernetes.io/config.source": "api"},
			}},
			wantContainers: map[string]wantContainer{ctrD: {
				name: "k8s_nginx_web_default_uid-web_2", sandbox: podD, state: runtimeapi.ContainerState_CONTAINER_RUNNING, attempt: 2, adopted: true,
			}},
		},
		{
			name: "another Berth's (another --root-dir) pod is listed but not this Berth's: its logs and network are its own",
			docker: []container.InspectResponse{
				berthSandbox(t, podO, otherRoot, podConfig("o", false), running),
				berthContainer(t, ctrO, otherRoot, podO, podConfig("o", false), "app", running),
				berthSandbox(t, podN, otherRoot, podConfig("n", false), exited),
			},
			cached: map[string][]string{podO: {"10.88.0.77"}, podN: {"10.88.0.78"}},
			wantSandboxes: map[string]wantSandbox{
				podO: {name: "k8s_POD_o_ns_uid-o_0", network: true, running: true, ips: []string{"10.88.0.77"}},
				podN: {name: "k8s_POD_n_ns_uid-n_0"},
			},
			wantContainers: map[string]wantContainer{ctrO: {
				name: "k8s_app_o_ns_uid-o_0", sandbox: podO, state: runtimeapi.ContainerState_CONTAINER_RUNNING,
			}},
		},
		{
			name:   "Docker-bridge mode: the IPs are Docker's",
			bridge: true,
			docker: []container.InspectResponse{
				withBridgeIP(berthSandbox(t, podA, thisRoot, mine, running), "172.17.0.5"),
			},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podA, mine, "")},
			wantSandboxes: map[string]wantSandbox{podA: {
				name: "k8s_POD_a_ns_uid-a_0", network: true, owned: true, running: true, ips: []string{"172.17.0.5"},
			}},
			wantCheckpoints: map[string]string{podA: ""},
		},
		{
			name: "containers with labels Berth cannot read are skipped, the rest recovered",
			docker: []container.InspectResponse{
				berthSandbox(t, podA, thisRoot, mine, running),
				withLabel(berthSandbox(t, podB, thisRoot, podConfig("b", false), running), dockerspec.LabelSandboxMeta, "{not json"),
				withLabel(berthContainer(t, ctrB, thisRoot, podA, mine, "bad", running), dockerspec.LabelContainerMeta, "["),
				renamed(criDockerdSandbox(podD, "web", running), "/web-server"),
				renamed(criDockerdContainer(ctrD, podA, "web", "nginx", 0, running), "/k8s_nginx_web_default_uid_notanumber"),
				withLabel(criDockerdSandbox(podO, "vol", running), dockerspec.LabelType, "volume"),
				berthContainer(t, ctrA, thisRoot, podA, mine, "app", running),
			},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podA, mine, checkpoint.StateUp)},
			wantSandboxes: map[string]wantSandbox{podA: {
				name: "k8s_POD_a_ns_uid-a_0", network: true, owned: true, running: true,
				ips: []string{"10.88.0.10"}, netns: "/var/run/netns/cni-" + podA[:8],
			}},
			wantContainers: map[string]wantContainer{ctrA: {
				name: "k8s_app_a_ns_uid-a_0", sandbox: podA, state: runtimeapi.ContainerState_CONTAINER_RUNNING, owned: true,
			}},
			wantCheckpoints: map[string]string{podA: checkpoint.StateUp},
			wantFollow:      []string{ctrA},
		},
		{
			name: "containers removed between the list and the inspect, or failing to inspect, are skipped",
			docker: []container.InspectResponse{
				berthSandbox(t, podA, thisRoot, mine, running),
				berthContainer(t, ctrA, thisRoot, podA, mine, "app", running),
				berthContainer(t, ctrB, thisRoot, podA, mine, "gone", running),
				berthContainer(t, ctrO, thisRoot, podA, mine, "broken", running),
			},
			vanish:      []string{ctrB},
			inspectErr:  []string{ctrO},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podA, mine, checkpoint.StateUp)},
			wantSandboxes: map[string]wantSandbox{podA: {
				name: "k8s_POD_a_ns_uid-a_0", network: true, owned: true, running: true,
				ips: []string{"10.88.0.10"}, netns: "/var/run/netns/cni-" + podA[:8],
			}},
			wantContainers: map[string]wantContainer{ctrA: {
				name: "k8s_app_a_ns_uid-a_0", sandbox: podA, state: runtimeapi.ContainerState_CONTAINER_RUNNING, owned: true,
			}},
			wantCheckpoints: map[string]string{podA: checkpoint.StateUp},
			wantFollow:      []string{ctrA},
		},
		{
			name:   "containers without Kubernetes' type label are not Berth's concern",
			docker: []container.InspectResponse{withoutLabel(criDockerdSandbox(podD, "web", running), dockerspec.LabelType)},
		},
	})
}

func TestRecoverSandboxesWhosePauseContainerIsGone(t *testing.T) {
	gone := podConfig("g", false)
	runRecoverCases(t, []recoverCase{
		{
			name:        "network up: listed NOTREADY from the checkpoint, network torn down as ADD had it",
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podG, gone, checkpoint.StateUp)},
			wantSandboxes: map[string]wantSandbox{podG: {
				name: "k8s_POD_g_ns_uid-g_0", owned: true, gone: true, ips: []string{"10.88.0.10"},
				labels: map[string]string{"app": "g"}, annotations: map[string]string{"note": "g"},
			}},
			wantDel:         []delCall{{sandbox: podG, confList: `{"name":"net-` + podG[:8] + `"}`}},
			wantCheckpoints: map[string]string{podG: checkpoint.StateDown},
		},
		{
			name:            "Berth died during CNI ADD: torn down too",
			checkpoints:     []*checkpoint.Sandbox{checkpointOf(podG, gone, checkpoint.StateAdding)},
			wantSandboxes:   map[string]wantSandbox{podG: {name: "k8s_POD_g_ns_uid-g_0", owned: true, gone: true, ips: []string{"10.88.0.10"}}},
			wantDel:         []delCall{{sandbox: podG, confList: `{"name":"net-` + podG[:8] + `"}`}},
			wantCheckpoints: map[string]string{podG: checkpoint.StateDown},
		},
		{
			name:            "network already down, or none (host network): nothing to tear down",
			checkpoints:     []*checkpoint.Sandbox{checkpointOf(podG, gone, checkpoint.StateDown), checkpointOf(podH, podConfig("h", true), "")},
			wantSandboxes:   map[string]wantSandbox{podG: {name: "k8s_POD_g_ns_uid-g_0", owned: true, gone: true, ips: []string{"10.88.0.10"}}, podH: {name: "k8s_POD_h_ns_uid-h_0", owned: true, gone: true}},
			wantCheckpoints: map[string]string{podG: checkpoint.StateDown, podH: ""},
		},
		{
			name:        "CNI DEL fails: recovery goes on, the record stays up so Stop and Remove try again",
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podG, gone, checkpoint.StateUp)},
			delErr:      errors.New("plugin bridge: failed"),
			wantSandboxes: map[string]wantSandbox{podG: {
				name: "k8s_POD_g_ns_uid-g_0", owned: true, gone: true, ips: []string{"10.88.0.10"},
			}},
			wantDel:         []delCall{{sandbox: podG, confList: `{"name":"net-` + podG[:8] + `"}`}},
			wantCheckpoints: map[string]string{podG: checkpoint.StateUp},
		},
		{
			name: "already indexed (a resync): marked gone",
			indexed: func(st *store.Store) {
				sb, _ := dockerspec.SandboxFromInspect(berthSandbox(t, podG, thisRoot, gone, running), thisRoot)
				sb.NetworkReady, sb.IPs = true, []string{"10.88.0.10"}
				st.PutSandbox(sb)
			},
			checkpoints:     []*checkpoint.Sandbox{checkpointOf(podG, gone, checkpoint.StateUp)},
			wantSandboxes:   map[string]wantSandbox{podG: {name: "k8s_POD_g_ns_uid-g_0", owned: true, gone: true, ips: []string{"10.88.0.10"}}},
			wantDel:         []delCall{{sandbox: podG, confList: `{"name":"net-` + podG[:8] + `"}`}},
			wantCheckpoints: map[string]string{podG: checkpoint.StateDown},
		},
		{
			name:           "a corrupt checkpoint without a pause container: nothing to list",
			rawCheckpoints: map[string]string{podK: "not json"},
		},
	})
}

// A resync runs after every break in Docker's event stream, over an index
// that already holds records.
func TestResyncUpdatesTheIndex(t *testing.T) {
	mine := podConfig("a", false)
	runRecoverCases(t, []recoverCase{
		{
			name: "a pod whose pause container stopped meanwhile: its network is no longer ready",
			indexed: func(st *store.Store) {
				sb, _ := dockerspec.SandboxFromInspect(berthSandbox(t, podB, thisRoot, podConfig("b", false), running), thisRoot)
				sb.NetworkReady, sb.IPs = true, []string{"10.88.0.10"}
				st.PutSandbox(sb)
			},
			docker:      []container.InspectResponse{berthSandbox(t, podB, thisRoot, podConfig("b", false), exited)},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podB, podConfig("b", false), checkpoint.StateUp)},
			wantSandboxes: map[string]wantSandbox{podB: {
				name: "k8s_POD_b_ns_uid-b_0", owned: true, ips: []string{"10.88.0.10"},
			}},
			wantCheckpoints: map[string]string{podB: checkpoint.StateUp},
		},
		{
			name: "an adopted pod whose pause container stopped: its network is no longer ready",
			indexed: func(st *store.Store) {
				sb, _ := dockerspec.SandboxFromInspect(criDockerdSandbox(podD, "web", running), thisRoot)
				sb.NetworkReady = true
				st.PutSandbox(sb)
			},
			docker:        []container.InspectResponse{criDockerdSandbox(podD, "web", exited)},
			wantSandboxes: map[string]wantSandbox{podD: {name: "k8s_POD_web_default_uid-web_1", adopted: true}},
		},
		{
			name: "an adopted pod that runs again gets the IPs CNI cached for it",
			indexed: func(st *store.Store) {
				sb, _ := dockerspec.SandboxFromInspect(criDockerdSandbox(podD, "web", exited), thisRoot)
				st.PutSandbox(sb)
			},
			docker: []container.InspectResponse{criDockerdSandbox(podD, "web", running)},
			cached: map[string][]string{podD: {"10.88.0.99"}},
			wantSandboxes: map[string]wantSandbox{podD: {
				name: "k8s_POD_web_default_uid-web_1", network: true, adopted: true, running: true, ips: []string{"10.88.0.99"},
			}},
		},
		{
			name: "records of containers and pods Docker no longer has are dropped",
			indexed: func(st *store.Store) {
				sb, _ := dockerspec.SandboxFromInspect(berthSandbox(t, podB, thisRoot, podConfig("b", false), running), thisRoot)
				st.PutSandbox(sb)
				c, _ := dockerspec.ContainerFromInspect(berthContainer(t, ctrB, thisRoot, podB, podConfig("b", false), "app", running), thisRoot)
				st.PutContainer(c)
			},
			docker:      []container.InspectResponse{berthSandbox(t, podA, thisRoot, mine, running)},
			checkpoints: []*checkpoint.Sandbox{checkpointOf(podA, mine, checkpoint.StateUp)},
			wantSandboxes: map[string]wantSandbox{podA: {
				name: "k8s_POD_a_ns_uid-a_0", network: true, owned: true, running: true,
				ips: []string{"10.88.0.10"}, netns: "/var/run/netns/cni-" + podA[:8],
			}},
			wantCheckpoints: map[string]string{podA: checkpoint.StateUp},
		},
		{
			name: "what RunPodSandbox and CreateContainer are making is left to them",
			indexed: func(st *store.Store) {
				sb, _ := dockerspec.SandboxFromInspect(berthSandbox(t, podR, thisRoot, podConfig("r", false), running), thisRoot)
				st.PutSandbox(sb)
				c, _ := dockerspec.ContainerFromInspect(berthContainer(t, ctrR, thisRoot, podR, podConfig("r", false), "app", running), thisRoot)
				st.PutContainer(c)
			},
			// Docker has a pause container and a container of names
			// being made, not indexed yet.
			docker: []container.InspectResponse{
				berthSandbox(t, podA, thisRoot, mine, running),
				berthContainer(t, ctrX, thisRoot, podA, mine, "app", running),
			},
			inFlight: []string{"k8s_POD_r_ns_uid-r_0", "k8s_app_r_ns_uid-r_0", "k8s_POD_a_ns_uid-a_0", "k8s_app_a_ns_uid-a_0"},
			wantSandboxes: map[string]wantSandbox{podR: {
				name: "k8s_POD_r_ns_uid-r_0", owned: true, running: true,
			}},
			wantContainers: map[string]wantContainer{ctrR: {
				name: "k8s_app_r_ns_uid-r_0", sandbox: podR, state: runtimeapi.ContainerState_CONTAINER_RUNNING, owned: true,
			}},
		},
	})
}

func TestRecoverFailsWithoutItsSources(t *testing.T) {
	runRecoverCases(t, []recoverCase{
		{
			name:    "Docker cannot list",
			docker:  []container.InspectResponse{berthSandbox(t, podA, thisRoot, podConfig("a", false), running)},
			listErr: fmt.Errorf("test: Docker is down: %w", errdefs.ErrUnavailable),
			wantErr: errdefs.ErrUnavailable,
		},
		{
			name:            "the checkpoint directory cannot be read",
			docker:          []container.InspectResponse{berthSandbox(t, podA, thisRoot, podConfig("a", false), running)},
			noCheckpointDir: true,
			wantErr:         os.ErrNotExist,
		},
	})
}

func runRecoverCases(t *testing.T, cases []recoverCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv := newFakeInventory(tc.docker)
			inv.listErr = tc.listErr
			for _, id := range tc.vanish {
				inv.vanish[id] = true
			}
			for _, id := range tc.inspectErr {
				inv.fail[id] = true
			}
			cpDir := filepath.Join(t.TempDir(), "sandboxes")
			cps, err := checkpoint.Open(cpDir)
			if err != nil {
				t.Fatal(err)
			}
			for _, cp := range tc.checkpoints {
				if err := cps.Save(cp); err != nil {
					t.Fatal(err)
				}
			}
			for id, raw := range tc.rawCheckpoints {
				if err := os.WriteFile(filepath.Join(cpDir, id+".json"), []byte(raw), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.noCheckpointDir {
				if err := os.RemoveAll(cpDir); err != nil {
					t.Fatal(err)
				}
			}
			net := &fakeNetwork{cni: !tc.bridge, cached: tc.cached, delErr: tc.delErr}
			logs := &fakeLogs{}
			st := store.New()
			if tc.indexed != nil {
				tc.indexed(st)
			}
			cfg := config.Default()
			cfg.RootDir = thisRoot
			s := New(Deps{
				Config: cfg, Network: net, Checkpoints: cps, Store: st, Logs: logs,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			for _, name := range tc.inFlight {
				s.guard.runs.m[name] = &detachedRun{done: make(chan struct{})}
			}

			err = s.resyncFrom(context.Background(), inv)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("recovery: got error %v, want one that is %v", err, tc.wantErr)
				}
				if n := len(st.Sandboxes(nil)) + len(st.Containers(nil)); n != 0 {
					t.Errorf("a failed recovery indexed %d records", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("recovery: %v", err)
			}
			if got := inv.filters(); !slices.Equal(got, []string{dockerspec.LabelType}) {
				t.Errorf("recovery listed Docker's containers with the label filters %q, want only %q", got, dockerspec.LabelType)
			}
			checkSandboxes(t, st, tc.wantSandboxes)
			checkContainers(t, st, tc.wantContainers)
			if got := net.calls(); !slices.Equal(got, tc.wantDel) {
				t.Errorf("CNI DEL calls:\n got %+v\nwant %+v", got, tc.wantDel)
			}
			for id, want := range tc.wantCheckpoints {
				cp, err := cps.Load(id)
				if err != nil {
					t.Errorf("checkpoint %s after recovery: %v", id[:8], err)
					continue
				}
				got := ""
				if cp.Network != nil {
					got = cp.Network.State
				}
				if got != want {
					t.Errorf("checkpoint %s: network state %q, want %q", id[:8], got, want)
				}
			}
			for id := range tc.rawCheckpoints {
				if _, err := os.Stat(filepath.Join(cpDir, id+".json")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("corrupt checkpoint %s was not moved aside (stat: %v)", id[:8], err)
				}
				if q, _ := filepath.Glob(filepath.Join(cpDir, id+".json.corrupt-*")); len(q) != 1 {
					t.Errorf("corrupt checkpoint %s: %d quarantined copies, want 1", id[:8], len(q))
				}
			}
			if got := logs.followed(); !slices.Equal(got, sortedCopy(tc.wantFollow)) {
				t.Errorf("log forwarding started for %v, want %v", shortIDs(got), shortIDs(sortedCopy(tc.wantFollow)))
			}
		})
	}
}

func checkSandboxes(t *testing.T, st *store.Store, want map[string]wantSandbox) {
	t.Helper()
	for _, sb := range st.Sandboxes(nil) {
		if _, ok := want[sb.ID]; !ok {
			t.Errorf("sandbox %s (%s) is indexed and should not be", sb.ID[:8], sb.Name)
		}
	}
	for id, w := range want {
		sb, ok := st.Sandbox(id)
		if !ok {
			t.Errorf("sandbox %s (%s) is not indexed", id[:8], w.name)
			continue
		}
		byName, ok := st.SandboxByName(w.name)
		if !ok || byName.ID != id {
			t.Errorf("sandbox %s: its name %s is not reserved for it", id[:8], w.name)
		}
		got := wantSandbox{
			name: sb.Name, network: sb.NetworkReady,
			owned: sb.Owned, adopted: sb.Adopted, gone: sb.ContainerGone, corrupt: sb.CheckpointCorrupt, running: sb.Running,
			ips: sb.IPs, netns: sb.NetNS,
		}
		if w.labels != nil {
			got.labels = sb.Labels
		}
		if w.annotations != nil {
			got.annotations = sb.Annotations
		}
		if !sameSandbox(got, w) {
			t.Errorf("sandbox %s:\n got %+v\nwant %+v", id[:8], got, w)
		}
		if sb.Metadata.GetName() == "" || sb.Labels == nil || sb.Annotations == nil {
			t.Errorf("sandbox %s: incomplete record: metadata %v, labels %v, annotations %v", id[:8], sb.Metadata, sb.Labels, sb.Annotations)
		}
	}
}

func sameSandbox(a, b wantSandbox) bool {
	return a.name == b.name && a.network == b.network && a.owned == b.owned && a.adopted == b.adopted &&
		a.gone == b.gone && a.corrupt == b.corrupt && a.running == b.running &&
		slices.Equal(a.ips, b.ips) && a.netns == b.netns &&
		sameMap(a.labels, b.labels) && sameMap(a.annotations, b.annotations)
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func checkContainers(t *testing.T, st *store.Store, want map[string]wantContainer) {
	t.Helper()
	for _, c := range st.Containers(nil) {
		if _, ok := want[c.ID]; !ok {
			t.Errorf("container %s (%s) is indexed and should not be", c.ID[:8], c.Name)
		}
	}
	for id, w := range want {
		c, ok := st.Container(id)
		if !ok {
			t.Errorf("container %s (%s) is not indexed", id[:8], w.name)
			continue
		}
		byName, ok := st.ContainerByName(w.name)
		if !ok || byName.ID != id {
			t.Errorf("container %s: its name %s is not reserved for it", id[:8], w.name)
		}
		got := wantContainer{name: c.Name, sandbox: c.SandboxID, state: c.State, attempt: c.Metadata.GetAttempt(), owned: c.Owned, adopted: c.Adopted}
		if got != w {
			t.Errorf("container %s:\n got %+v\nwant %+v", id[:8], got, w)
		}
	}
}

// Inspect outputs. Berth's own are built from the create requests
// dockerspec makes, so their labels are what Berth writes; cri-dockerd's
// carry the labels cri-dockerd (and dockershim) put on theirs.

type runState bool

const (
	running runState = true
	exited  runState = false
)

// noPid is a process id no process has (above the kernel's largest,
// 2^22): nothing about a real process is read.
const noPid = 1 << 30

func podConfig(name string, hostNetwork bool) *runtimeapi.PodSandboxConfig {
	mode := runtimeapi.NamespaceMode_POD
	if hostNetwork {
		mode = runtimeapi.NamespaceMode_NODE
	}
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name},
		Labels:       map[string]string{"app": name},
		Annotations:  map[string]string{"note": name},
		LogDirectory: "/var/log/pods/ns_" + name + "_uid-" + name,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: mode},
		}},
	}
}

func berthSandbox(t *testing.T, id, root string, pod *runtimeapi.PodSandboxConfig, run runState) container.InspectResponse {
	t.Helper()
	spec, err := dockerspec.SandboxSpec(pod, "", dockerspec.SandboxOptions{
		Image: config.DefaultPauseImage, RootDir: root, CNI: true, CgroupDriver: "cgroupfs", Runtimes: []string{"runc"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return inspectOf(id, spec, run)
}

func berthContainer(t *testing.T, id, root, sandboxID string, pod *runtimeapi.PodSandboxConfig, name string, run runState) container.InspectResponse {
	t.Helper()
	sb := &store.Sandbox{
		ID: sandboxID, Name: dockerspec.SandboxName(pod.GetMetadata()), Metadata: pod.GetMetadata(),
		LogDirectory: pod.GetLogDirectory(), Namespaces: pod.GetLinux().GetSecurityContext().GetNamespaceOptions(),
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox:latest"},
		Command:  []string{"sleep", "3600"},
		LogPath:  name + "/0.log",
	}
	spec, err := dockerspec.ContainerSpec(sb, cfg, dockerspec.ContainerOptions{RootDir: root, APIVersion: "1.41", CgroupVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	spec.Name = dockerspec.ContainerName(pod.GetMetadata(), cfg.GetMetadata())
	return inspectOf(id, spec, run)
}

func inspectOf(id string, spec *dockerspec.CreateSpec, run runState) container.InspectResponse {
	in := container.InspectResponse{
		ID: id, Name: "/" + spec.Name, Created: "2026-01-02T03:04:05Z", Image: "sha256:" + id64('c'),
		LogPath: "/var/lib/docker/containers/" + id + "/" + id + "-json.log",
		Config:  spec.Config, HostConfig: spec.HostConfig,
		State: &container.State{Status: container.StateExited, ExitCode: 0,
			StartedAt: "2026-01-02T03:04:06Z", FinishedAt: "2026-01-02T03:05:00Z"},
	}
	if run {
		in.State = &container.State{Status: container.StateRunning, Running: true, Pid: noPid,
			StartedAt: "2026-01-02T03:04:06Z", FinishedAt: "0001-01-01T00:00:00Z"}
	}
	return in
}

func criDockerdSandbox(id, pod string, run runState) container.InspectResponse {
	labels := map[string]string{
		dockerspec.LabelType:                     dockerspec.TypeSandbox,
		dockerspec.LabelContainerName:            dockerspec.PodInfraContainerName,
		"io.kubernetes.pod.name":                 pod,
		"io.kubernetes.pod.namespace":            "default",
		"io.kubernetes.pod.uid":                  "uid-" + pod,
		"app":                                    pod,
		"annotation.kubernetes.io/config.source": "api",
	}
	in := inspectOf(id, &dockerspec.CreateSpec{
		Name:       fmt.Sprintf("k8s_POD_%s_default_uid-%s_1", pod, pod),
		Config:     &container.Config{Image: "registry.k8s.io/pause:3.9", Hostname: pod, Labels: labels},
		HostConfig: &container.HostConfig{NetworkMode: "none", Runtime: "runc", IpcMode: "shareable"},
	}, run)
	return in
}

func criDockerdContainer(id, sandboxID, pod, name string, attempt int, run runState) container.InspectResponse {
	labels := map[string]string{
		dockerspec.LabelType:          dockerspec.TypeContainer,
		dockerspec.LabelSandboxID:     sandboxID,
		dockerspec.LabelContainerName: name,
		dockerspec.LabelLogPath:       fmt.Sprintf("/var/log/pods/default_%s_uid-%s/%s/%d.log", pod, pod, name, attempt),
		"io.kubernetes.pod.name":      pod,
		"io.kubernetes.pod.namespace": "default",
		"io.kubernetes.pod.uid":       "uid-" + pod,
	}
	return inspectOf(id, &dockerspec.CreateSpec{
		Name:       fmt.Sprintf("k8s_%s_%s_default_uid-%s_%d", name, pod, pod, attempt),
		Config:     &container.Config{Image: "nginx:1.27", Labels: labels},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode("container:" + sandboxID)},
	}, run)
}

// checkpointOf is the record RunPodSandbox writes; state "" is one without
// a CNI network (host network, Docker-bridge mode).
func checkpointOf(id string, pod *runtimeapi.PodSandboxConfig, state string) *checkpoint.Sandbox {
	m := pod.GetMetadata()
	cp := &checkpoint.Sandbox{
		ID: id, Name: dockerspec.SandboxName(m), PodName: m.GetName(), PodNamespace: m.GetNamespace(), PodUID: m.GetUid(),
		Labels: pod.GetLabels(), Annotations: pod.GetAnnotations(), LogDirectory: pod.GetLogDirectory(), CreatedAt: 1,
		HostNetwork: pod.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE,
	}
	if state != "" {
		cp.Network = &checkpoint.Network{State: state, Attachment: network.Attachment{
			ConfList: json.RawMessage(`{"name":"net-` + id[:8] + `"}`),
			NetNS:    "/var/run/netns/cni-" + id[:8], IfName: "eth0", IPs: []string{"10.88.0.10"},
		}}
	}
	return cp
}

func withLabel(in container.InspectResponse, k, v string) container.InspectResponse {
	labels := map[string]string{}
	for lk, lv := range in.Config.Labels {
		labels[lk] = lv
	}
	labels[k] = v
	cfg := *in.Config
	cfg.Labels = labels
	in.Config = &cfg
	return in
}

func withoutLabel(in container.InspectResponse, k string) container.InspectResponse {
	in = withLabel(in, k, "")
	delete(in.Config.Labels, k)
	return in
}

func renamed(in container.InspectResponse, name string) container.InspectResponse {
	in.Name = name
	return in
}

func withBridgeIP(in container.InspectResponse, ip string) container.InspectResponse {
	in.NetworkSettings = &container.NetworkSettings{Networks: map[string]*mobynetwork.EndpointSettings{
		"bridge": {IPAddress: netip.MustParseAddr(ip)},
	}}
	return in
}

// fakeInventory is Docker as recovery sees it. ListContainers filters by
// label as Docker does ("key" or "key=value"), so a container without
// Kubernetes' labels is not listed.
type fakeInventory struct {
	mu         sync.Mutex // guards asked
	containers []container.InspectResponse
	vanish     map[string]bool
	fail       map[string]bool
	listErr    error
	asked      [][]string
}

func newFakeInventory(cs []container.InspectResponse) *fakeInventory {
	return &fakeInventory{containers: cs, vanish: map[string]bool{}, fail: map[string]bool{}}
}

func (f *fakeInventory) ListContainers(_ context.Context, labels ...string) ([]container.Summary, error) {
	f.mu.Lock()
	f.asked = append(f.asked, labels)
	f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []container.Summary
	for _, in := range f.containers {
		var have map[string]string
		if in.Config != nil {
			have = in.Config.Labels
		}
		if !matchesLabelFilters(have, labels) {
			continue
		}
		out = append(out, container.Summary{ID: in.ID, Names: []string{in.Name}, Labels: have})
	}
	return out, nil
}

func matchesLabelFilters(have map[string]string, filters []string) bool {
	for _, f := range filters {
		k, v, withValue := strings.Cut(f, "=")
		got, ok := have[k]
		if !ok || (withValue && got != v) {
			return false
		}
	}
	return true
}

func (f *fakeInventory) InspectContainer(_ context.Context, id string) (container.InspectResponse, error) {
	if f.fail[id] {
		return container.InspectResponse{}, fmt.Errorf("test: inspect failed: %w", errdefs.ErrUnavailable)
	}
	for _, in := range f.containers {
		if in.ID == id && !f.vanish[id] {
			return in, nil
		}
	}
	return container.InspectResponse{}, fmt.Errorf("test: no such container %s: %w", id, errdefs.ErrNotFound)
}

// filters are the label filters of every list, flattened.
func (f *fakeInventory) filters() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.asked {
		out = append(out, a...)
	}
	return out
}

// fakeNetwork is CNI: it records each DEL and answers with delErr.
type fakeNetwork struct {
	cni    bool
	cached map[string][]string
	delErr error

	mu   sync.Mutex // guards dels
	dels []delCall
}

func (n *fakeNetwork) Ready() (bool, string)  { return true, "" }
func (n *fakeNetwork) UsesCNI() bool          { return n.cni }
func (n *fakeNetwork) SetPodCIDR(string) bool { return false }
func (n *fakeNetwork) PodCIDR() string        { return "" }
func (n *fakeNetwork) Prepare(p network.PodNetwork) (*network.Attachment, error) {
	return &network.Attachment{ConfList: json.RawMessage(`{"name":"current"}`), NetNS: p.NetNS}, nil
}
func (n *fakeNetwork) Add(context.Context, string, *network.Attachment) error {
	return errors.New("test: recovery never adds a network")
}
func (n *fakeNetwork) Del(_ context.Context, sandboxID string, a *network.Attachment, netns string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dels = append(n.dels, delCall{sandbox: sandboxID, netns: netns, confList: string(a.ConfList)})
	return n.delErr
}
func (n *fakeNetwork) Check(context.Context, string, *network.Attachment) error { return nil }
func (n *fakeNetwork) CachedIPs(id string) []string                             { return n.cached[id] }

func (n *fakeNetwork) calls() []delCall {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.dels)
}

// fakeLogs is the log forwarder: it records whose logs it was asked to
// forward.
type fakeLogs struct {
	mu     sync.Mutex // guards follow
	follow map[string]bool
}

func (l *fakeLogs) Follow(id, _, _ string, _ func() bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.follow == nil {
		l.follow = map[string]bool{}
	}
	l.follow[id] = true
	return nil
}
func (l *fakeLogs) Exited(string)       {}
func (l *fakeLogs) Reopen(string) error { return nil }
func (l *fakeLogs) Forget(string)       {}

func (l *fakeLogs) followed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.follow {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = dockerspec.ShortID(id)
	}
	return out
}
