package hostinfo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-cri/berth/internal/sockdiag"
)

// Process is a process on this host.
type Process struct {
	PID  int
	Name string // its comm
}

// DockerProcesses returns the processes of the Docker daemon serving the
// unix socket at path: dockerd, the process that accepts connections on
// it (systemd only listens, under socket activation), and the containerd
// it runs on, a child of dockerd (Docker's managed containerd) or the
// process serving the socket its --containerd flag names. Processes in
// another PID namespace than Berth's (a Docker in a container) are left
// out, as cri-dockerd leaves them.
func DockerProcesses(ctx context.Context, path string) ([]Process, error) {
	dockerd, err := acceptorOf(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("finding the Docker daemon behind %s: %w", path, err)
	}
	procs := []Process{{PID: dockerd, Name: comm(dockerd)}}
	for _, pid := range children(dockerd) {
		if comm(pid) == "containerd" {
			procs = append(procs, Process{PID: pid, Name: "containerd"})
		}
	}
	if len(procs) == 1 {
		if sock := flagValue(cmdline(dockerd), "--containerd"); sock != "" {
			holders, err := sockdiag.Holders("/proc", sock)
			if err == nil {
				for _, h := range holders {
					if h.Serving && h.Comm == "containerd" {
						procs = append(procs, Process{PID: h.PID, Name: h.Comm})
					}
				}
			}
		}
	}
	out := procs[:0]
	for _, p := range procs {
		if samePIDNamespace(p.PID) {
			out = append(out, p)
		}
	}
	return out, nil
}

// acceptorOf connects to the Docker socket at path, has a ping answered
// (so the connection has been accepted) and returns the accepting process.
func acceptorOf(ctx context.Context, path string) (int, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte("GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, fmt.Errorf("pinging Docker: %w", err)
	}
	resp.Body.Close()
	return sockdiag.Acceptor("/proc", c.(*net.UnixConn))
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func cmdline(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// flagValue returns the value of --name=value or --name value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// children returns the pids whose parent is pid.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err == nil && parentOf(stat) == pid {
			out = append(out, child)
		}
	}
	return out
}

// parentOf reads the ppid from /proc/pid/stat; the comm before it may hold
// spaces and parentheses, so the fields start after the last ')'.
func parentOf(stat []byte) int {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

// samePIDNamespace reports whether pid is in this process's PID
// namespace. (cri-dockerd compares with init's; reading init's namespace
// needs ptrace access to it, which sandboxes refuse, and Berth in a
// container sees no host process to compare anyway.)
func samePIDNamespace(pid int) bool {
	self, err1 := os.Readlink("/proc/self/ns/pid")
	other, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return err1 == nil && err2 == nil && self == other
}
