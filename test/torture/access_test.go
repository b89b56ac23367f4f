package torture

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client/pkg/versions"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// TestAccessSocketAndListeners checks who can reach Berth: the CRI socket
// is a 0660 socket owned by root and by the group --socket-group names
// (root's by default), and every TCP port the berth listens on — the
// metrics and pprof listener when asked for, the streaming server — is on
// loopback unless configured otherwise; with no flags there is no metrics
// listener at all.
func TestAccessSocketAndListeners(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	grp, err := user.LookupGroup("daemon")
	if err != nil {
		t.Fatalf("the test needs the group daemon: %v", err)
	}
	gid, _ := strconv.Atoi(grp.Gid)
	for _, tc := range []struct {
		name string
		args []string
		gid  int
	}{
		{"defaults", nil, 0},
		{"--socket-group daemon", []string{"--socket-group", "daemon"}, gid},
	} {
		b := framework.StartBerth(t, framework.Options{Args: tc.args})
		fi, err := os.Stat(b.Socket)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		r.Check(fi.Mode()&os.ModeSocket != 0 && fi.Mode().Perm() == 0o660 && st.Uid == 0 && int(st.Gid) == tc.gid,
			"%s: socket %v owned by %d:%d, want a 0660 socket owned by 0:%d", tc.name, fi.Mode(), st.Uid, st.Gid, tc.gid)
		r.Note("socket %v %d:%d with %s", fi.Mode().Perm(), st.Uid, st.Gid, tc.name)
		checkLoopback(r, b, tc.name)
		if tc.args == nil {
			r.Check(!strings.Contains(b.Log(), "serving metrics"), "a metrics listener was opened without --metrics-address")
		}
	}
	// With metrics (and pprof) asked for on loopback.
	n := startNode(t, r, nodeOptions{})
	checkLoopback(r, n.b, "--metrics-address 127.0.0.1:0")
	_, err = n.b.HTTPGet("/debug/pprof/")
	r.Check(err == nil, "pprof on the loopback metrics listener: %v", err)
}

// checkLoopback counts every TCP listener of the berth not on loopback.
func checkLoopback(r *Row, b *framework.Berth, what string) {
	addrs, err := b.TCPListeners()
	if err != nil {
		r.Unexpected("%s: reading the berth's listeners: %v", what, err)
		return
	}
	for _, a := range addrs {
		host, _, _ := net.SplitHostPort(a)
		r.Check(net.ParseIP(host).IsLoopback(), "%s: berth listens on %s, not on loopback", what, a)
	}
	r.Note("%s: TCP listeners %v", what, addrs)
}

// TestAccessSymlinksInRootDir plants symbolic links where Berth keeps its
// state: a link as the checkpoint or log-position directory makes Berth
// refuse to start; links (and a FIFO) planted inside them, where a record or
// a temporary file goes, are never written through — the files they point
// to are unchanged — and never keep a pod from being stopped and removed; a
// link at the CRI log path kubelet names is replaced by a regular file.
func TestAccessSymlinksInRootDir(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	outsideDir := t.TempDir()
	victim := filepath.Join(outsideDir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		data, err := os.ReadFile(victim)
		r.Check(err == nil && string(data) == "keep", "%s: the file a planted link points to changed: %q %v", what, data, err)
		entries, _ := os.ReadDir(outsideDir)
		r.Check(len(entries) == 1, "%s: files appeared outside the root dir: %v", what, entries)
	}

	// A linked state directory: refused at start-up.
	for _, sub := range []string{"sandboxes", "logs"} {
		dir := t.TempDir()
		root := filepath.Join(dir, "root")
		if err := os.MkdirAll(root, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outsideDir, filepath.Join(root, sub)); err != nil {
			t.Fatal(err)
		}
		r.Fault(1)
		n := startNode(t, r, nodeOptions{Dir: dir, NoWait: true})
		err := n.b.Wait(time.Minute)
		r.Check(err != nil && strings.Contains(n.b.Log(), "symlinks are refused"), "berth with %s/%s a symlink: exit %v, log:\n%s", root, sub, err, n.b.Log())
		unchanged("a linked " + sub + " directory")
	}

	n := startNode(t, r, nodeOptions{})
	pod := n.podConfig("planted")
	podID, err := n.runPod(pod)
	if r.Call("RunPodSandbox", err) != nil {
		t.Fatal(err)
	}
	// A link where kubelet's log file goes: replaced, not written through.
	logPath := filepath.Join(pod.LogDirectory, "app.log")
	if err := os.MkdirAll(pod.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, logPath); err != nil {
		t.Fatal(err)
	}
	r.Fault(1)
	ctrID, err := n.startContainer(podID, pod, containerConfig("app"))
	if r.Call("CreateContainer+StartContainer", err) != nil {
		t.Fatal(err)
	}
	err = eventually(time.Minute, func() error {
		fi, err := os.Lstat(logPath)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("the log path is %v (%v)", fi, err)
		}
		data, _ := os.ReadFile(logPath)
		if !strings.Contains(string(data), "started") {
			return fmt.Errorf("the log has %q", data)
		}
		return nil
	})
	r.Check(err == nil, "the container's log: %v", err)
	unchanged("a link at the CRI log path")

	// Links where temporary files go, then a clean restart (which saves
	// every log position) and a stop (which saves the checkpoint).
	cpDir, posDir := filepath.Join(n.b.RootDir, "sandboxes"), filepath.Join(n.b.RootDir, "logs")
	for _, p := range []string{filepath.Join(cpDir, podID+".json.tmp"), filepath.Join(posDir, ctrID+".json.tmp")} {
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
		r.Fault(1)
	}
	if err := n.b.Stop(); err != nil {
		r.Unexpected("stopping berth: %v", err)
	}
	if err := n.b.Restart(); err != nil {
		t.Fatalf("restarting berth: %v", err)
	}
	unchanged("links where temporary files go, after a restart")
	fi, err := os.Lstat(filepath.Join(posDir, ctrID+".json"))
	r.Check(err == nil && fi.Mode().IsRegular(), "the log position after a restart: %v %v", fi, err)

	// The checkpoint itself replaced by a link: the pod is still stopped
	// and removed, its address released, the link moved aside.
	cp := filepath.Join(cpDir, podID+".json")
	if err := os.Remove(cp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, cp); err != nil {
		t.Fatal(err)
	}
	r.Fault(1)
	r.Call("StopPodSandbox+RemovePodSandbox with the checkpoint a link", n.removePod(podID))
	unchanged("a link as the checkpoint")
	q, _ := filepath.Glob(cp + ".corrupt-*")
	r.Check(len(q) == 1, "the planted link was not moved aside: %v", q)
	for _, f := range q {
		_ = os.Remove(f)
	}
	r.Leaks(n.leaks())
}

// TestAccessMounts checks what a container's mounts can make Berth do on
// the host: a host path that is a symbolic link is resolved and what it
// points to is mounted (as kubelet, containerd and runc do); a missing host
// path is created, and nothing else; a mount is relabelled (":Z") only when
// it asks for selinux_relabel and the daemon labels containers (SELinux);
// and a path Docker's bind syntax would misread (a colon) is refused,
// naming the field, wherever Berth makes a bind.
func TestAccessMounts(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	n := startNode(t, r, nodeOptions{})
	pod := n.podConfig("mounts")
	podID, err := n.runPod(pod)
	if r.Call("RunPodSandbox", err) != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	real := filepath.Join(host, "real")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, "content"), []byte("real"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(host, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(host, "new", "dir")
	cfg := containerConfig("mounter")
	cfg.Mounts = []*runtimeapi.Mount{
		{HostPath: link, ContainerPath: "/linked"},
		{HostPath: missing, ContainerPath: "/created"},
		{HostPath: real, ContainerPath: "/relabelled", SelinuxRelabel: true},
	}
	ctrID, err := n.startContainer(podID, pod, cfg)
	if r.Call("CreateContainer+StartContainer with mounts", err) != nil {
		t.Fatal(err)
	}
	out, err := dockerCLI(n.docker, "exec", ctrID, "cat", "/linked/content")
	r.Check(err == nil && out == "real", "the linked mount shows %q (%v), want what the link points to", out, err)
	fi, err := os.Lstat(missing)
	r.Check(err == nil && fi.IsDir(), "the missing host path was not created as a directory: %v", err)
	entries, _ := os.ReadDir(host)
	r.Check(len(entries) == 3, "Berth created more than the named path on the host: %v", entries)

	// Relabelling needs a daemon that labels containers; binds are made
	// below API 1.42 and for relabelling (the Mount API otherwise).
	secOpts, err := dockerCLI(n.docker, "info", "--format", "{{json .SecurityOptions}}")
	if err != nil {
		t.Fatalf("docker info: %v: %s", err, secOpts)
	}
	selinux := strings.Contains(secOpts, `"name=selinux"`)
	api, err := dockerCLI(n.docker, "version", "--format", "{{.Server.APIVersion}}")
	if err != nil {
		t.Fatalf("docker version: %v: %s", err, api)
	}
	binds := selinux || versions.LessThan(api, "1.42")

	raw, err := dockerCLI(n.docker, "inspect", "--format", "{{json .HostConfig}}", ctrID)
	if err != nil {
		t.Fatalf("docker inspect: %v: %s", err, raw)
	}
	var hc struct {
		Binds  []string
		Mounts []struct{ Source, Target string }
	}
	if err := json.Unmarshal([]byte(raw), &hc); err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{} // container path → host path
	for _, b := range hc.Binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue
		}
		sources[parts[1]] = parts[0]
		opts := ""
		if len(parts) > 2 {
			opts = parts[2]
		}
		relabel := strings.Contains(","+opts+",", ",z,") || strings.Contains(","+opts+",", ",Z,")
		r.Check(relabel == (parts[1] == "/relabelled" && selinux), "bind %q: relabelled %v, but only /relabelled asked for it (daemon labels containers: %v)", b, relabel, selinux)
	}
	for _, m := range hc.Mounts {
		sources[m.Target] = m.Source
	}
	r.Check(sources["/linked"] == real, "/linked is bound from %q, want the link's target %q", sources["/linked"], real)
	r.Check(sources["/created"] == missing, "/created is bound from %q, want %q", sources["/created"], missing)
	r.Check(sources["/relabelled"] == real, "/relabelled is bound from %q, want %q", sources["/relabelled"], real)

	// A colon in a bind's path: refused where the mount is a bind; the
	// Mount API takes the path as it is.
	bad := containerConfig("colon")
	bad.Mounts = []*runtimeapi.Mount{{HostPath: real + ":z", ContainerPath: "/x", SelinuxRelabel: true}}
	c, cancel := ctx()
	_, err = n.rt.CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: pod})
	cancel()
	if binds {
		r.Fault(1)
		r.Call("CreateContainer with a colon in a host path", wantErr(err), codes.InvalidArgument)
		r.Check(err != nil && strings.Contains(err.Error(), "config.mounts[0].host_path"), "the refusal does not name the field: %v", err)
		if _, err := os.Lstat(real + ":z"); err == nil {
			r.Leak("the refused host path %s:z was created", real)
		}
	} else {
		r.Call("CreateContainer with a colon in a host path, through the Mount API", err)
	}

	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// TestAccessStreamingTokens checks the tokens of exec, attach and
// port-forward URLs: each is 8 characters of base64url from crypto/rand
// (48 bits, cri-streaming's request cache), no two alike over many
// requests, and the streaming server answers 404 to tokens that were never
// issued — random ones and near misses of real ones. That a token works
// once is TestStreamingTokens (test/e2e); that it expires after a minute,
// TestPendingTokens (internal/streaming).
func TestAccessStreamingTokens(t *testing.T) {
	t.Parallel()
	r := newRow(t)
	n := startNode(t, r, nodeOptions{})
	pod := n.podConfig("tokens")
	podID, err := n.runPod(pod)
	if r.Call("RunPodSandbox", err) != nil {
		t.Fatal(err)
	}
	ctrID, err := n.startContainer(podID, pod, containerConfig("app"))
	if r.Call("CreateContainer+StartContainer", err) != nil {
		t.Fatal(err)
	}
	const urls = 300
	seen := map[string]bool{}
	var base *url.URL
	for i := range urls {
		c, cancel := ctx()
		var raw string
		switch i % 3 {
		case 0:
			resp, err := n.rt.Exec(c, &runtimeapi.ExecRequest{ContainerId: ctrID, Cmd: []string{"true"}, Stdout: true})
			raw = resp.GetUrl()
			r.Call("Exec", err)
		case 1:
			resp, err := n.rt.Attach(c, &runtimeapi.AttachRequest{ContainerId: ctrID, Stdout: true})
			raw = resp.GetUrl()
			r.Call("Attach", err)
		case 2:
			resp, err := n.rt.PortForward(c, &runtimeapi.PortForwardRequest{PodSandboxId: podID})
			raw = resp.GetUrl()
			r.Call("PortForward", err)
		}
		cancel()
		u, err := url.Parse(raw)
		if !r.Check(err == nil && raw != "", "a streaming URL %q: %v", raw, err) {
			continue
		}
		base = u
		host, _, _ := net.SplitHostPort(u.Host)
		r.Check(net.ParseIP(host).IsLoopback(), "streaming URL %s is not on loopback", raw)
		token := path.Base(u.Path)
		_, decErr := base64.RawURLEncoding.DecodeString(token + strings.Repeat("A", (4-len(token)%4)%4))
		r.Check(len(token) >= 8 && decErr == nil, "token %q: want at least 8 base64url characters (48 random bits)", token)
		r.Check(!seen[token], "token %q was issued twice", token)
		seen[token] = true
	}
	if base == nil {
		t.Fatal("no streaming URL was issued")
	}
	// Guesses: random tokens, and real ones with one character changed.
	var guesses []string
	for range 20 {
		guesses = append(guesses, randomToken())
	}
	for token := range seen {
		if len(guesses) >= 60 {
			break
		}
		b := []byte(token)
		b[len(b)-1] ^= 1
		if !seen[string(b)] {
			guesses = append(guesses, string(b))
		}
	}
	refused := 0
	for _, g := range guesses {
		for _, kind := range []string{"exec", "attach", "portforward"} {
			r.Fault(1)
			resp, err := http.Post(fmt.Sprintf("%s://%s/%s/%s", base.Scheme, base.Host, kind, g), "text/plain", nil)
			if !r.Check(err == nil, "POST to the streaming server: %v", err) {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				r.Expected()
				refused++
			} else {
				r.Unexpected("a guessed %s token %q: status %d, want 404", kind, g, resp.StatusCode)
			}
		}
	}
	r.Note("%d tokens issued, all distinct; %d guesses refused", len(seen), refused)
	if err := n.removeAll(); err != nil {
		r.Unexpected("removing the pods: %v", err)
	}
	r.Leaks(n.leaks())
}

// randomToken is 8 characters of base64url, as cri-streaming makes them.
func randomToken() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
