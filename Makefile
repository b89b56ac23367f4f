# Berth's entry points. The two a newcomer needs:
#   make run   set up this machine (Docker, CNI, test images) and serve CRI
#   make test  set up, vet, and run every test against real Docker (the
#              e2e suite on Debian's Docker 20.10 and on current Docker)
# and the reliability suite (docs/reliability.md):
#   make torture     full size: kill -9, Docker restarts, faults, 100
#                    clients for 10 minutes, 1,000 pod cycles (an hour or so)
#   make torture-ci  the same scenarios scaled down, berth under the race
#                    detector (a few minutes; part of `make test`)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
GO ?= go
BIN := bin/berth
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS := -X github.com/berth-cri/berth/internal/version.Version=$(VERSION) -X github.com/berth-cri/berth/internal/version.GitCommit=$(COMMIT)
E2E_TIMEOUT ?= 40m
NFPM_VERSION ?= v2.45.2
# Debian versions start with a digit: untagged builds become 0.0.0~git<hash>.
ifndef DEB_VERSION
DEB_VERSION := $(shell v=$(VERSION); v=$${v#v}; case $$v in ([0-9]*) ;; (*) v=0.0.0~git$$v;; esac; echo $$v | tr '-' '~')
endif
DEB_ARCH ?= $(shell $(GO) env GOARCH)
RUN_ARGS ?=
# E2E_RUN limits `make e2e` to the tests matching a go test -run pattern.
E2E_RUN ?=
# E2E_PARALLEL is how many e2e tests run at once (they mostly wait on Docker).
E2E_PARALLEL ?= 6
# E2E_CURRENT_TESTS is the part of the suite `make test` also runs on
# current Docker: the tests of what depends on the engine (API version,
# image store, Mount API, log and event streams, inspect's format as read
# on adoption, runtimes): images and pulls, mounts, container status and
# security, logs, exec, networking modes, and the features a newer daemon
# enables (checkpoints, image volumes, recursive read-only mounts, CDI,
# user namespaces, supplemental groups; docs/cri-coverage.md). Tests of
# Berth's own logic (validation, restarts of Docker or Berth, concurrency,
# cgroup-read stats, CRIU, which this kernel cannot run) run on Docker
# 20.10 only. E2E_CURRENT_RUN= (empty) runs the whole suite there too.
E2E_CURRENT_TESTS := \
	Version Status StatusReportsTheDaemon StatusReportsTheFeaturesDockerHas \
	RuntimeConfigReportsDockerCgroupDriver RuntimeHandler \
	PullImageByTagAndByDigest ImageIdentityAcrossReferences ImageIdentityOfAnIndex \
	PullImageCredentials PullImageUnknownImage PullImageUnreachableRegistry \
	PullImageRejectsBadRequests ConcurrentIdenticalPullsShareOneDockerPull \
	SlowPullThatKeepsProgressingOutlivesTheDeadline StalledPullIsCancelled \
	CancelledPullRequestCancelsDockerPull ListImagesAndImageStatus ImageStatusVerbose \
	RemoveImage ImageFsInfo ImageVolumes \
	SandboxImageIsPulled SandboxImageFallsBackToALocalBuild SandboxImagePullUsesTheNodesDockerCredentials \
	PodSandboxLifecycle DockerBridgeMode HostNetworkPod DNSConfigReachesContainers \
	PodSecurityContextReachesThePauseContainer \
	ContainerLifecycle ContainerStatusImageByID ContainerStopSignal ContainerExitReasons BindMounts \
	MountPropagation ReadOnlyMountsRecursiveOrNot MountOptionsAreRefused \
	ResourcesLandInTheCgroup ResourcesUnified UpdateContainerResources \
	OOMKillIsReported Capabilities PrivilegedWorksWithoutEveryCapability \
	UsersAndGroups ReadonlyRootfsAndNoNewPrivs MaskedAndReadonlyPaths \
	SeccompProfiles SELinuxAndAppArmorOptionsReachDocker NamespaceSharing \
	SupplementalGroupsPolicy UserNamespaces UserNamespacesThroughTheWrapper UserNamespacesRefusedAsTheCRISays UserNamespacesNeedTheWrapper \
	CDIDevices BerthRestartWhileContainersRun \
	ContainerLogsInCRIFormat LogRotationWithReopenContainerLog LogsSurviveBerthCrash \
	ExecSync ExecStreams Attach PortForward \
	CheckpointContainerNeedsDockersCheckpointAPI CheckpointAndRestorePodFiles \
	ContainerEventsFollowALifecycle ContainerStatsWritableLayer
empty :=
space := $(empty) $(empty)
# \b ends each name: TestStatus must not select TestStatusFollowsDockerRestart.
E2E_CURRENT_RUN ?= ^Test($(subst $(space),|,$(strip $(E2E_CURRENT_TESTS))))\b

# The reliability suite (test/torture): TORTURE_TIMEOUT bounds a full run;
# TORTURE_PARALLEL is how many full-size scenarios run at once (one: each
# alone keeps a two-core machine's Docker answering, so the figures are
# Berth's), TORTURE_CI_PARALLEL how many scaled-down ones (they mostly wait
# on Docker); TORTURE_RUN takes a -run pattern.
TORTURE_TIMEOUT ?= 3h
TORTURE_PARALLEL ?= 1
TORTURE_CI_PARALLEL ?= 16
TORTURE_RUN ?=

.PHONY: all build setup setup-docker-current setup-containerd bench-sidebyside bench-kubelet bench-memory run test vet unit e2e e2e-system e2e-current test-kubelet test-cgroupv2 kubelet node-e2e test-node-e2e test-node-e2e-serial bench fuzz doctor-test torture torture-ci test-migrate deb deb-test fmt clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/berth

setup:
	hack/setup.sh

run: setup build
	@echo "berth: serving CRI on unix:///run/berth/berth.sock"
	@echo "berth: point kubelet at it with --container-runtime-endpoint=unix:///run/berth/berth.sock,"
	@echo "berth: or try: crictl --runtime-endpoint unix:///run/berth/berth.sock info"
	$(BIN) serve $(RUN_ARGS)

# The e2e suite runs twice: in full on Debian's Docker 20.10 (the system
# daemon), and its engine-sensitive part (E2E_CURRENT_RUN) on current
# upstream Docker Engine (a second daemon on its own socket), whose build
# overlaps the first half (hack/test-all.sh).
test: setup
	hack/test-all.sh

# Builds (once; cached) and starts current Docker Engine for tests.
setup-docker-current:
	hack/setup-docker-current.sh

vet:
	@out=$$(gofmt -l cmd internal test bench); if [[ -n $$out ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd test/kubelet && $(GO) vet ./...

# The unit tests run under the race detector: much of Berth is goroutines
# sharing state (the index, the event hub, flights, samplers, log
# forwarding), and a race there is a bug the tests would otherwise miss.
unit:
	$(GO) test -race -count=1 ./internal/... ./cmd/... ./test/framework/...

# The suite against BERTH_TEST_DOCKER_HOST (default: the system daemon).
e2e:
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -parallel $(E2E_PARALLEL) -v $(if $(E2E_RUN),-run '$(E2E_RUN)') ./test/e2e/ 2>&1 | hack/test-summary.sh

# The suite against Debian's Docker 20.10, the system daemon hack/setup.sh starts.
e2e-system:
	@echo "e2e: engine 1/2: the system Docker (Debian's docker.io)"
	BERTH_TEST_DOCKER_HOST=unix:///var/run/docker.sock BERTH_TEST_DOCKERD_BINARY=/usr/sbin/dockerd BERTH_TEST_DOCKERD_ARGS= \
		$(MAKE) --no-print-directory e2e

# The suite against current upstream Docker Engine (hack/setup-docker-current.sh).
e2e-current: setup-docker-current
	@echo "e2e: engine 2/2: current Docker Engine (hack/setup-docker-current.sh)"
	eval "$$(hack/setup-docker-current.sh env)"; \
		$(MAKE) --no-print-directory e2e E2E_RUN='$(E2E_CURRENT_RUN)'

# The kubelet suite (docs/kubelet.md): a real kubelet, standalone, runs
# static pods on Berth and a private Docker daemon; the checks go through
# kubelet's own endpoints. `make kubelet` builds kubelet from the Go module
# proxy once and caches it under ~/.cache/berth/kubelet-<version>/. Not part
# of `make test` (README, Tests): about 6 minutes with kubelet cached, and a
# 20-minute kubelet build on a cache miss.
KUBELET_TIMEOUT ?= 40m
kubelet:
	hack/build-kubelet.sh

# TestUserNamespacePod (hostUsers: false through Berth's runtime wrapper)
# needs Docker 24 or newer: it runs on the current engine, the rest on the
# system one.
test-kubelet: setup setup-docker-current
	kubelet=$$(hack/build-kubelet.sh); \
		cd test/kubelet && { \
		BERTH_TEST_KUBELET=$$kubelet $(GO) test -count=1 -timeout $(KUBELET_TIMEOUT) -skip '^Test(SystemdNode|UserNamespacePod)$$' -v . || true; \
		current=$$(../../hack/setup-docker-current.sh env) || echo "FAIL: hack/setup-docker-current.sh env"; \
		eval "$$current"; \
		BERTH_TEST_KUBELET=$$kubelet $(GO) test -count=1 -timeout $(KUBELET_TIMEOUT) -run '^TestUserNamespacePod$$' -v . || true; \
		} 2>&1 | ../../hack/test-summary.sh

# The cgroup v2 node (hack/vm/test-cgroupv2.sh; README, Tests): the tests
# whose outcome depends on cgroups and the cgroup driver run inside a
# Debian bookworm virtual machine with cgroup v2 only, systemd as init and
# Docker on the systemd cgroup driver (this host cannot leave cgroup v1).
# The image is built once from Debian's packages and cached under
# ~/.cache/berth/; the machine is emulated in software here (no usable
# KVM), so a run takes tens of minutes and is not part of `make test`.
# CGROUPV2_RUN= takes another -run pattern over test/e2e; CGROUPV2_KUBELET=0
# leaves out the kubelet test (test/kubelet TestSystemdNode: a kubelet with
# its defaults, the driver from RuntimeConfig, one pod of each QoS class).
CGROUPV2_TESTS := \
	RuntimeConfigReportsDockerCgroupDriver StatusReportsTheDaemon \
	ResourcesUnified ResourcesLandInTheCgroup UpdateContainerResources UpdatePodSandboxResources \
	OOMKillIsReported PodHostnameSysctlsAndCgroupParent PrivilegedWorksWithoutEveryCapability \
	ContainerStatsMemoryWorkingSet ContainerStatsCPURate ContainerStatsPressure StatsFilters \
	PodSandboxMetrics ContainerEventsAcrossDockerRestart
CGROUPV2_RUN ?= ^Test($(subst $(space),|,$(strip $(CGROUPV2_TESTS))))$$
CGROUPV2_KUBELET ?= 1
test-cgroupv2: setup
	CGROUPV2_RUN='$(CGROUPV2_RUN)' CGROUPV2_KUBELET=$(CGROUPV2_KUBELET) hack/vm/test-cgroupv2.sh

# Kubernetes' node conformance suite (docs/conformance.md): test/e2e_node
# with focus [NodeConformance], in its local mode (etcd, kube-apiserver and
# kubelet on this machine), against Berth on a private Docker daemon, with
# the suite's images built locally and served by a local registry.
# `make node-e2e` builds e2e_node.test, ginkgo and the images' programs from
# the Go module proxy once (about half an hour; cached under
# ~/.cache/berth/node-e2e-<version>/). Not part of `make test` (README).
# NODE_E2E_FOCUS / NODE_E2E_SKIP override the spec selection, NODE_E2E_NODES
# the number of parallel ginkgo processes.
NODE_E2E_TIMEOUT ?= 8h
node-e2e:
	hack/build-node-e2e.sh

test-node-e2e: setup
	$(GO) test -count=1 -timeout $(NODE_E2E_TIMEOUT) -v -run '^TestNodeConformance$$' ./test/nodee2e/ 2>&1 | hack/test-summary.sh

# The [Serial] NodeConformance specs, one at a time (they restart kubelet,
# fill the disk, change its configuration).
test-node-e2e-serial: setup
	NODE_E2E_FOCUS='\[NodeConformance\].*\[Serial\]|\[Serial\].*\[NodeConformance\]' \
		NODE_E2E_SKIP='\[Flaky\]|\[Slow\]|\[Alpha\]' NODE_E2E_NODES=1 \
		$(GO) test -count=1 -timeout $(NODE_E2E_TIMEOUT) -v -run '^TestNodeConformance$$' ./test/nodee2e/ 2>&1 | hack/test-summary.sh

# Every benchmark but the 48-minute memory one (make bench-memory),
# BenchmarkSideBySide also on containerd 2.x (hack/setup-containerd.sh
# builds it once from the Go module proxy, about 10 minutes on two cores,
# caches it and starts it on its own socket). BENCH_CONTAINERD=0 leaves
# containerd out.
BENCH_CONTAINERD ?= 1
BENCH_TIMEOUT ?= 120m
bench:
	$(if $(filter 1,$(BENCH_CONTAINERD)),hack/setup-containerd.sh && eval "$$(hack/setup-containerd.sh env)" &&) \
		$(GO) test -run '^$$' -bench . -skip '^BenchmarkMemoryAtScale$$' -benchtime 3s -timeout $(BENCH_TIMEOUT) ./bench/

# Berth, raw Docker + CNI and containerd 2.x side by side on the same pods
# (docs/performance.md): SIDEBYSIDE_PODS pods, SIDEBYSIDE_TIME iterations of
# each call. On current Docker: BERTH_TEST_DOCKER_HOST from
# `hack/setup-docker-current.sh env`.
SIDEBYSIDE_PODS ?= 50
SIDEBYSIDE_TIME ?= 20x
bench-sidebyside: setup-containerd
	eval "$$(hack/setup-containerd.sh env)" && \
		$(GO) test -run '^$$' -bench '^BenchmarkSideBySide$$' -benchtime $(SIDEBYSIDE_TIME) -timeout $(BENCH_TIMEOUT) ./bench/ \
		-args -sidebyside.pods $(SIDEBYSIDE_PODS)

# Memory at scale (docs/performance.md): MEMORY_PODS pods kept running on
# Berth and on containerd 2.x, then MEMORY_CYCLES pods started and removed
# on each; RSS and heap before, at MEMORY_PODS and after.
MEMORY_PODS ?= 200
MEMORY_CYCLES ?= 1000
bench-memory: setup-containerd
	eval "$$(hack/setup-containerd.sh env)" && \
		$(GO) test -run '^$$' -bench '^BenchmarkMemoryAtScale$$' -benchtime 1x -timeout $(BENCH_TIMEOUT) ./bench/ \
		-args -memory.pods $(MEMORY_PODS) -memory.cycles $(MEMORY_CYCLES)

# Pod start-up as kubelet sees it (docs/performance.md): a real kubelet,
# registered with a real kube-apiserver and etcd (hack/setup-migrate.sh
# builds and installs them, as for test-migrate), starts STARTUP_PODS pods
# at once on Berth, on Berth with the EventedPLEG gate and on containerd
# 2.x, and reports its pod_start_sli_duration_seconds, the time until all
# run, and the runtime's and kubelet's CPU and memory, over STARTUP_BATCHES
# batches on each.
STARTUP_PODS ?= 30
STARTUP_BATCHES ?= 3
bench-kubelet: setup setup-containerd
	hack/setup-migrate.sh
	kubelet=$$(hack/build-kubelet.sh) && eval "$$(hack/setup-containerd.sh env)" && cd test/kubelet && \
		BERTH_TEST_KUBELET=$$kubelet BERTH_BENCH_STARTUP_PODS=$(STARTUP_PODS) \
		$(GO) test -count=1 -run '^$$' -bench '^BenchmarkPodStartup$$' -benchtime $(STARTUP_BATCHES)x -timeout 60m -v .

# Builds (once; cached) and starts containerd 2.x with its CRI plugin, the
# benchmarks' second reference. `hack/setup-containerd.sh stop` removes its
# pods and stops it.
setup-containerd:
	hack/setup-containerd.sh

# The reliability suite at full size against the system Docker: Berth
# killed while 50 pods come and go, Docker restarted with and without
# live-restore, CNI, Docker and disk faults, 100 clients for 10 minutes,
# RSS over 1,000 pod cycles, garbage on the socket, access checks. Prints
# the table of faults, operations, errors and leaks (docs/reliability.md).
torture: setup
	TORTURE_SCALE=full BERTH_TEST_RACE=0 $(GO) test -count=1 -timeout $(TORTURE_TIMEOUT) -parallel $(TORTURE_PARALLEL) -v \
		$(if $(TORTURE_RUN),-run '$(TORTURE_RUN)') ./test/torture/ 2>&1 | hack/test-summary.sh

# The same scenarios scaled down for CI, with berth built with the race
# detector (the memory scenario uses a plain build).
torture-ci:
	TORTURE_SCALE=ci BERTH_TEST_RACE=1 $(GO) test -count=1 -timeout 20m -parallel $(TORTURE_CI_PARALLEL) -v \
		$(if $(TORTURE_RUN),-run '$(TORTURE_RUN)') ./test/torture/ 2>&1 | hack/test-summary.sh

# berth doctor against real set-ups: kubelet files, CNI configurations,
# private Docker daemons, socket holders (about a minute).
doctor-test:
	$(GO) test -count=1 -timeout 10m -v ./test/doctor/ 2>&1 | hack/test-summary.sh

# berth migrate end to end against a real kube-apiserver and etcd. Not part
# of `make test`: the first run builds kube-apiserver (10-15 minutes on two
# cores, then cached in ~/.cache/berth/); later runs take about a minute.
test-migrate: setup
	hack/setup-migrate.sh
	$(GO) test -count=1 -timeout 30m -v ./test/migrate/ 2>&1 | hack/test-summary.sh

# The Debian package (binary, systemd units, default config, docs), built
# with nfpm from the Go module proxy: dist/berth_<version>_<arch>.deb.
deb:
	rm -rf dist/pkg dist/berth_*.deb && mkdir -p dist/pkg
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/pkg/berth ./cmd/berth
	dist/pkg/berth config default > dist/pkg/config.toml
	BERTH_DEB_VERSION=$(DEB_VERSION) BERTH_DEB_ARCH=$(DEB_ARCH) \
		$(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) package \
		--config packaging/nfpm.yaml --packager deb --target dist/berth_$(DEB_VERSION)_$(DEB_ARCH).deb

# Builds the package and inspects it: contents, control fields, maintainer
# scripts, and the unit files through systemd-analyze verify.
deb-test: deb
	hack/check-deb.sh dist/berth_$(DEB_VERSION)_$(DEB_ARCH).deb

fmt:
	gofmt -w cmd internal test bench

clean:
	rm -rf bin dist

# Fuzz every request-decoding target for FUZZTIME each; new interesting
# inputs land in Go's cache (copy them into testdata/fuzz to keep them).
FUZZTIME ?= 60s
fuzz:
	for t in dockerspec:FuzzRunPodSandbox dockerspec:FuzzCreateContainer dockerspec:FuzzImageReference \
		dockerspec:FuzzRegistryAuth cri:FuzzRequests logs:FuzzDecode; do \
		$(GO) test ./internal/$${t%%:*}/ -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) || exit 1; done
