package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/moby/moby/client"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/idmap"
)

// checkDocker: Docker answers, and speaks an API Berth supports.
func checkDocker(_ context.Context, e *env) []Finding {
	const name = "docker"
	if !e.health.Ready {
		return []Finding{fail(name,
			fmt.Sprintf("Docker at %s: %s", e.opts.Config.DockerEndpoint, e.health.Reason),
			"start Docker (systemctl enable --now docker), or point --docker-endpoint at it; Berth needs Docker 20.10 (API "+docker.MinAPIVersion+") or newer")}
	}
	d := e.health.Daemon
	return []Finding{pass(name, fmt.Sprintf("Docker %s (API %s, negotiated %s) at %s; cgroup v%s, %s storage",
		d.Version, d.APIVersion, d.NegotiatedAPIVersion, e.opts.Config.DockerEndpoint, d.CgroupVersion, d.StorageDriver))}
}

// checkCgroupDriver: Docker's cgroup driver is the one kubelet is set to use.
func checkCgroupDriver(_ context.Context, e *env) []Finding {
	const name = "cgroup-driver"
	if !e.health.Ready {
		return dockerDown(name)
	}
	dockerDriver := e.health.Daemon.CgroupDriver
	kubeletDriver, src := e.kubelet.CgroupDriver()
	if src == nil {
		if !e.kubelet.Found() {
			return []Finding{warn(name,
				fmt.Sprintf("Docker uses %s; no kubelet configuration found to compare with", dockerDriver),
				fmt.Sprintf("if kubelet runs here, point --kubelet-config at its KubeletConfiguration; set cgroupDriver: %s in it", dockerDriver))}
		}
		if dockerDriver == "cgroupfs" {
			return []Finding{pass(name, "Docker uses cgroupfs; kubelet's files set no cgroupDriver, and kubelet's default is cgroupfs")}
		}
		return []Finding{warn(name,
			fmt.Sprintf("Docker uses %s; kubelet's files set no cgroupDriver: kubelet 1.28+ takes it from Berth's RuntimeConfig, older kubelets use cgroupfs", dockerDriver),
			fmt.Sprintf("set cgroupDriver: %s in kubelet's KubeletConfiguration", dockerDriver))}
	}
	if kubeletDriver == dockerDriver {
		return []Finding{pass(name, fmt.Sprintf("Docker and kubelet (%s %s) both use %s", src.Kind, src.Path, dockerDriver))}
	}
	return []Finding{fail(name,
		fmt.Sprintf("Docker uses %s but kubelet is set to %s (%s %s)", dockerDriver, kubeletDriver, src.Kind, src.Path),
		fmt.Sprintf("make them agree: set cgroupDriver: %s in kubelet's configuration (and remove --cgroup-driver from its flags), or change Docker's native.cgroupdriver exec-opt in daemon.json, then restart kubelet", dockerDriver))}
}

// checkPauseImage: the sandbox image is present, or Berth can make it.
func checkPauseImage(ctx context.Context, e *env) []Finding {
	const name = "pause-image"
	img := e.opts.Config.PodInfraContainerImage
	if !e.health.Ready {
		return dockerDown(name)
	}
	ctx, cancel := e.docker.WithTimeout(ctx)
	defer cancel()
	_, err := e.docker.API().ImageInspect(ctx, img)
	switch {
	case err == nil:
		return []Finding{pass(name, fmt.Sprintf("%s is present in Docker", img))}
	case !errors.Is(docker.Classify(err), errNotFound):
		return []Finding{warn(name, fmt.Sprintf("inspecting %s: %v", img, err), "check Docker's health")}
	case img == config.DefaultPauseImage:
		return []Finding{pass(name, fmt.Sprintf("%s is not in Docker yet: Berth builds it locally on the first pod (no registry needed)", img))}
	default:
		return []Finding{warn(name,
			fmt.Sprintf("%s is not in Docker: Berth pulls it on the first pod, and builds it locally under that name if the pull fails", img),
			fmt.Sprintf("pre-pull it (docker pull %s), or use Berth's own image (--pod-infra-container-image=%s), which needs no registry", img, config.DefaultPauseImage))}
	}
}

// checkDockerSocketMounts: containers that bind-mount Docker's socket keep
// working with Berth, but depend on Docker staying on the node.
func checkDockerSocketMounts(ctx context.Context, e *env) []Finding {
	const name = "docker-socket-mounts"
	if !e.health.Ready {
		return dockerDown(name)
	}
	ctx, cancel := e.docker.WithTimeout(ctx)
	defer cancel()
	list, err := e.docker.API().ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return []Finding{warn(name, "listing containers: "+err.Error(), "check Docker's health")}
	}
	sockets := dockerSocketPaths(e.opts.Config.DockerEndpoint)
	var hits []string
	for _, c := range list.Items {
		for _, m := range c.Mounts {
			if mountsSocket(m.Source, sockets) {
				cname := c.ID[:min(12, len(c.ID))]
				if len(c.Names) > 0 {
					cname = strings.TrimPrefix(c.Names[0], "/")
				}
				hits = append(hits, fmt.Sprintf("%s (%s → %s)", cname, m.Source, m.Destination))
				break
			}
		}
	}
	if len(hits) == 0 {
		return []Finding{pass(name, "no container mounts Docker's socket")}
	}
	sort.Strings(hits)
	return []Finding{warn(name,
		fmt.Sprintf("%d container(s) mount Docker's socket: %s", len(hits), strings.Join(hits, ", ")),
		"these keep working with Berth (Docker stays), but they control every container on the node, pods included; move them off the socket before removing Docker")}
}

func dockerSocketPaths(endpoint string) []string {
	paths := []string{"/var/run/docker.sock", "/run/docker.sock"}
	if p, ok := strings.CutPrefix(endpoint, "unix://"); ok && !slices.Contains(paths, p) {
		paths = append(paths, p)
	}
	return paths
}

// mountsSocket reports whether a mount's source is one of the sockets or a
// directory holding one (e.g. /var/run).
func mountsSocket(source string, sockets []string) bool {
	source = filepath.Clean(source)
	for _, s := range sockets {
		if source == s || (source != "/" && strings.HasPrefix(s, source+"/")) {
			return true
		}
	}
	return false
}

// daemonJSON is the part of Docker's daemon.json that affects pods.
type daemonJSON struct {
	LogDriver          *string           `json:"log-driver"`
	LogOpts            map[string]string `json:"log-opts"`
	RegistryMirrors    []string          `json:"registry-mirrors"`
	InsecureRegistries []string          `json:"insecure-registries"`
	LiveRestore        *bool             `json:"live-restore"`
	ExecOpts           []string          `json:"exec-opts"`
}

// checkDaemonSettings: Docker's settings that change how pods behave, from
// the running daemon (the truth) and daemon.json (what a restart applies).
func checkDaemonSettings(_ context.Context, e *env) []Finding {
	var out []Finding
	var file daemonJSON
	fileFound := false
	data, err := os.ReadFile(e.opts.DaemonJSON)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		out = append(out, pass("daemon-json", fmt.Sprintf("%s does not exist: Docker runs with its defaults", e.opts.DaemonJSON)))
	case err != nil:
		out = append(out, warn("daemon-json", fmt.Sprintf("reading %s: %v", e.opts.DaemonJSON, err), "check the file's permissions"))
	default:
		if err := json.Unmarshal(data, &file); err != nil {
			out = append(out, fail("daemon-json", fmt.Sprintf("%s is not valid JSON: %v", e.opts.DaemonJSON, err),
				"fix the file: Docker refuses to start with it"))
		} else {
			fileFound = true
			out = append(out, pass("daemon-json", fmt.Sprintf("%s parses", e.opts.DaemonJSON)))
		}
	}
	if e.info == nil {
		return append(out, dockerDown("docker-settings")...)
	}
	info := e.info.Info

	// Log driver: kubelet reads container logs from files Berth links to
	// Docker's json-file logs.
	logDriver := info.LoggingDriver
	switch {
	case logDriver == "json-file":
		maxSize := file.LogOpts["max-size"]
		if maxSize == "" {
			out = append(out, warn("log-driver",
				"Docker's log driver is json-file with no max-size: container logs grow without bound (kubelet's containerLogMaxSize does not apply to Docker's log files)",
				`set "log-opts": {"max-size": "10m", "max-file": "5"} in daemon.json and restart Docker (applies to new containers)`))
		} else {
			out = append(out, pass("log-driver", fmt.Sprintf("Docker's log driver is json-file, max-size %s, max-file %s", maxSize, orDefault(file.LogOpts["max-file"], "1"))))
		}
	default:
		out = append(out, fail("log-driver",
			fmt.Sprintf("Docker's log driver is %q: kubectl logs needs json-file", logDriver),
			`set "log-driver": "json-file" in daemon.json and restart Docker; ship logs from the json files (as with any CRI runtime) instead`))
	}
	if fileFound && file.LogDriver != nil && *file.LogDriver != logDriver {
		out = append(out, warn("log-driver",
			fmt.Sprintf("daemon.json sets log-driver %q but Docker runs with %q", *file.LogDriver, logDriver),
			"restart Docker to apply daemon.json, or fix the file"))
	}

	// Registries: pulls through Berth use Docker's registry settings.
	var mirrors []string
	var insecure []string
	if rc := info.RegistryConfig; rc != nil {
		mirrors = rc.Mirrors
		for _, p := range rc.InsecureRegistryCIDRs {
			if !p.Addr().IsLoopback() {
				insecure = append(insecure, p.String())
			}
		}
		for name, idx := range rc.IndexConfigs {
			if idx != nil && !idx.Secure && name != "docker.io" {
				insecure = append(insecure, name)
			}
		}
	}
	sort.Strings(insecure)
	if len(mirrors) > 0 {
		out = append(out, pass("registry-mirrors", "Docker pulls docker.io images through "+strings.Join(mirrors, ", ")+"; pods' pulls through Berth do too"))
	} else {
		out = append(out, pass("registry-mirrors", "no registry mirrors"))
	}
	if len(insecure) > 0 {
		out = append(out, warn("insecure-registries",
			"Docker pulls from these without verified TLS: "+strings.Join(insecure, ", ")+"; pods' images from them are not authenticated",
			`serve them with TLS and remove them from "insecure-registries" in daemon.json`))
	} else {
		out = append(out, pass("insecure-registries", "no insecure registries beyond loopback"))
	}
	if fileFound {
		for _, want := range file.InsecureRegistries {
			if !slices.Contains(insecure, want) && !strings.HasPrefix(want, "127.") && !strings.HasPrefix(want, "localhost") {
				out = append(out, warn("insecure-registries",
					fmt.Sprintf("daemon.json lists %q but the running Docker does not", want),
					"restart Docker to apply daemon.json"))
			}
		}
	}

	// Live restore: without it, restarting Docker kills every pod.
	if info.LiveRestoreEnabled {
		out = append(out, pass("live-restore", "live-restore is on: pods keep running while Docker restarts or upgrades"))
	} else {
		out = append(out, warn("live-restore",
			"live-restore is off: restarting or upgrading Docker stops every pod on the node",
			`set "live-restore": true in daemon.json and reload Docker (systemctl reload docker)`))
	}
	if fileFound && file.LiveRestore != nil && *file.LiveRestore != info.LiveRestoreEnabled {
		out = append(out, warn("live-restore",
			fmt.Sprintf("daemon.json sets live-restore %v but Docker runs with %v", *file.LiveRestore, info.LiveRestoreEnabled),
			"reload Docker to apply daemon.json"))
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// usernsFix is how to give Docker Berth's runtime wrapper.
const usernsFix = `run berth docker-runtime register --runc /usr/bin/runc --reload (it adds "runtimes": {"berth-userns": {"path": "/usr/bin/berth", "runtimeArgs": ["oci-runtime", "--runc", "/usr/bin/runc"]}} to daemon.json, keeping the rest; runc 1.2 or newer; Docker 25 or newer; Linux 6.8 or newer)`

// checkUserNamespaces: whether pods with hostUsers: false can run, through
// Berth's OCI runtime wrapper (Docker runtime berth-userns). Without the
// wrapper they are refused, which is a choice, not a fault; a wrapper that
// is registered but cannot run them is.
func checkUserNamespaces(_ context.Context, e *env) []Finding {
	const name = "user-namespaces"
	if !e.health.Ready {
		return dockerDown(name)
	}
	d := e.health.Daemon
	err := d.UserNamespaces()
	switch {
	case err == nil:
		return []Finding{pass(name, "pods with hostUsers: false run in user namespaces of their own, through Berth's runtime wrapper (Docker runtime "+idmap.RuntimeName+")")}
	case slices.Contains(d.Runtimes, idmap.RuntimeName):
		return []Finding{warn(name, "Docker has the runtime "+idmap.RuntimeName+", but pods with hostUsers: false cannot run: "+err.Error(), usernsFix)}
	default:
		return []Finding{pass(name, "pods with hostUsers: false are refused (optional feature): "+err.Error())}
	}
}
