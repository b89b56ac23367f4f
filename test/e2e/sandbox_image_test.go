package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/pause"
	"github.com/berth-cri/berth/test/framework"
)

// sandboxImageState is Status's verbose "sandboxImage".
type sandboxImageState struct {
	Image     string `json:"image"`
	Source    string `json:"source"`
	PullError string `json:"pullError"`
}

func sandboxImage(t *testing.T, b *framework.Berth) sandboxImageState {
	t.Helper()
	st, err := b.Runtime.Status(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	var s sandboxImageState
	if err := json.Unmarshal([]byte(st.Info["sandboxImage"]), &s); err != nil {
		t.Fatalf("Status info sandboxImage %q: %v", st.Info["sandboxImage"], err)
	}
	return s
}

// imageLayers returns the layer diff ids Docker has for an image: they
// survive a push and a pull unchanged, on either image store.
func imageLayers(t *testing.T, ref string) []string {
	t.Helper()
	c, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	img, err := c.ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatalf("inspecting %s: %v", ref, err)
	}
	return img.RootFS.Layers
}

// pushPauseImage builds a sandbox image of its own (Berth's pause program
// beside random data), pushes it to reg as <reg>/berth-e2e/pause-…:3.10,
// removes it from Docker and returns its reference and layers.
func pushPauseImage(t *testing.T, reg string) (ref string, layers []string) {
	t.Helper()
	ref = reg + "/" + framework.UniqueName("berth-e2e/pause") + ":3.10"
	id := framework.BuildImage(t, "", ref, framework.ImageOptions{Pause: true})
	layers = imageLayers(t, id)
	framework.PushImage(t, "", ref)
	framework.RemoveImage(t, "", id)
	if framework.ImageExists(t, "", ref) {
		t.Fatalf("%s still in Docker after removing it", ref)
	}
	// Whatever Berth pulls or builds under ref goes when the test ends
	// (after its pods: cleanups run last first).
	t.Cleanup(func() { framework.RemoveImage(t, "", ref) })
	return ref, layers
}

// hostNetworkPod runs a pod without CNI: only its sandbox image matters here.
func hostNetworkPod(t *testing.T, b *framework.Berth, name string) string {
	t.Helper()
	cfg := podConfig(name)
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	return runPod(t, b, cfg)
}

// sandboxImageOf returns the layers of the image a sandbox's pause
// container runs.
func sandboxImageOf(t *testing.T, sandboxID string) []string {
	t.Helper()
	c, err := framework.DockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.ContainerInspect(context.Background(), sandboxID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return imageLayers(t, res.Container.Image)
}

func ourPauseLayers(t *testing.T) []string {
	d, err := pause.LayerDigest()
	if err != nil {
		t.Fatal(err)
	}
	return []string{d}
}

// TestSandboxImageIsPulled: a --pod-infra-container-image that is not in
// Docker is pulled from its registry, and the pod runs the registry's image.
func TestSandboxImageIsPulled(t *testing.T) {
	t.Parallel()
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	ref, layers := pushPauseImage(t, reg.Addr)
	b := framework.StartBerth(t, framework.Options{Args: append(sharedNet.Args(), "--pod-infra-container-image", ref)})
	if s := sandboxImage(t, b); s.Source != "unchecked" || s.Image != ref {
		t.Errorf("sandboxImage before any pod = %+v, want %s unchecked", s, ref)
	}

	id := hostNetworkPod(t, b, "pulled-pause")
	if got := sandboxImageOf(t, id); !slices.Equal(got, layers) {
		t.Errorf("the pause container runs an image with layers %v, want the registry's %v (Berth's own is %v)", got, layers, ourPauseLayers(t))
	}
	if s := sandboxImage(t, b); s.Source != "pulled" || s.PullError != "" {
		t.Errorf("sandboxImage = %+v, want pulled", s)
	}
	if !strings.Contains(b.Log(), "pulled the sandbox image") || strings.Contains(b.Log(), "built the sandbox image locally") {
		t.Errorf("berth's log does not say it pulled the sandbox image, or says it built one")
	}
	// A second pod uses the image as it is.
	hostNetworkPod(t, b, "pulled-pause-2")
	if n := strings.Count(b.Log(), "pulled the sandbox image"); n != 1 {
		t.Errorf("the sandbox image was pulled %d times, want once", n)
	}
	// Removed behind Berth's back (Berth remembers it was there): the
	// next pod's create finds it gone, and Berth pulls it again.
	if out, err := docker(t, "rmi", "-f", ref); err != nil {
		t.Fatalf("docker rmi -f %s: %v: %s", ref, err, out)
	}
	id = hostNetworkPod(t, b, "pulled-pause-3")
	if got := sandboxImageOf(t, id); !slices.Equal(got, layers) {
		t.Errorf("after the image was removed, the pause container runs an image with layers %v, want the registry's %v", got, layers)
	}
	if n := strings.Count(b.Log(), "pulled the sandbox image"); n != 2 {
		t.Errorf("the sandbox image was pulled %d times in all, want twice (again after it was removed)", n)
	}
}

// TestSandboxImageFallsBackToALocalBuild: when the sandbox image cannot be
// pulled, Berth's pause program is built under its name, the log says why,
// and so does Status; after a restart the pull is tried once more.
func TestSandboxImageFallsBackToALocalBuild(t *testing.T) {
	t.Parallel()
	// A loopback port nobody listens on.
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	addr := reg.Addr
	reg.Stop()
	ref := addr + "/" + framework.UniqueName("berth-e2e/pause") + ":3.10"
	t.Cleanup(func() { framework.RemoveImage(t, "", ref) })
	b := framework.StartBerth(t, framework.Options{Args: append(sharedNet.Args(), "--pod-infra-container-image", ref)})

	id := hostNetworkPod(t, b, "standin-pause")
	if got := sandboxImageOf(t, id); !slices.Equal(got, ourPauseLayers(t)) {
		t.Errorf("the pause container runs an image with layers %v, want Berth's own %v", got, ourPauseLayers(t))
	}
	s := sandboxImage(t, b)
	if s.Source != "built" || !strings.Contains(s.PullError, "registry "+addr+" is unreachable") {
		t.Errorf("sandboxImage = %+v, want built, with the pull's error (registry %s is unreachable)", s, addr)
	}
	if !strings.Contains(b.Log(), "cannot pull the sandbox image; building Berth's pause image under its name") {
		t.Errorf("berth's log does not say the pull failed")
	}

	// Restarted, Berth tries the registry once more for the stand-in it
	// finds, keeps it when the pull fails again, and says so.
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	hostNetworkPod(t, b, "standin-pause-2")
	if !strings.Contains(b.Log(), "cannot pull the sandbox image; keeping Berth's pause program under its name") {
		t.Errorf("after a restart berth did not try the registry again")
	}
	if s := sandboxImage(t, b); s.Source != "built" || !strings.Contains(s.PullError, "unreachable") {
		t.Errorf("sandboxImage after a restart = %+v, want built, with the pull's error", s)
	}
}

// TestSandboxImagePullUsesTheNodesDockerCredentials: kubelet sends no
// credentials for the sandbox image; Berth takes them from Docker's
// configuration file ($DOCKER_CONFIG/config.json, as `docker login`
// writes it). Without them the pull is refused and a stand-in is built;
// with them, the next Berth replaces the stand-in with the real image.
func TestSandboxImagePullUsesTheNodesDockerCredentials(t *testing.T) {
	t.Parallel()
	open := framework.StartRegistry(t, framework.RegistryOptions{})
	basic := framework.StartRegistry(t, framework.RegistryOptions{Dir: open.Dir, Users: map[string]string{"alice": "wonderland"}})
	pushed, layers := pushPauseImage(t, open.Addr)
	ref := basic.Addr + strings.TrimPrefix(pushed, open.Addr)
	t.Cleanup(func() { framework.RemoveImage(t, "", ref) })

	noCreds := t.TempDir()
	withCreds := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("alice:wonderland"))
	conf := `{"auths": {"http://` + basic.Addr + `": {"auth": "` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(withCreds, "config.json"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another registry's credentials are not this one's.
	other := `{"auths": {"` + open.Addr + `": {"auth": "` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(noCreds, "config.json"), []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}

	outer := t
	t.Run("without credentials", func(t *testing.T) {
		b := framework.StartBerth(t, framework.Options{
			Args: append(sharedNet.Args(), "--pod-infra-container-image", ref),
			Env:  []string{"DOCKER_CONFIG=" + noCreds},
		})
		id := hostNetworkPod(t, b, "creds-pause")
		if got := sandboxImageOf(t, id); !slices.Equal(got, ourPauseLayers(t)) {
			t.Errorf("the pause container runs an image with layers %v, want Berth's own", got)
		}
		if s := sandboxImage(t, b); s.Source != "built" || !strings.Contains(s.PullError, "authentication") {
			t.Errorf("sandboxImage = %+v, want built after a refused pull", s)
		}
		// The stand-in's id: the pull below untags it, and it must go
		// too, once its pods are gone (the whole test's end).
		c, err := framework.DockerClient()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		img, err := c.ImageInspect(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		outer.Cleanup(func() { framework.RemoveImage(outer, "", img.ID) })
	})

	t.Run("with the node's credentials", func(t *testing.T) {
		b := framework.StartBerth(t, framework.Options{
			Args: append(sharedNet.Args(), "--pod-infra-container-image", ref),
			Env:  []string{"DOCKER_CONFIG=" + withCreds},
		})
		id := hostNetworkPod(t, b, "creds-pause")
		if got := sandboxImageOf(t, id); !slices.Equal(got, layers) {
			t.Errorf("the pause container runs an image with layers %v, want the registry's %v", got, layers)
		}
		if s := sandboxImage(t, b); s.Source != "pulled" {
			t.Errorf("sandboxImage = %+v, want pulled", s)
		}
	})
}
