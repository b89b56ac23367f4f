package framework

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Process figures of a running berth, read from /proc and from its
// --metrics-address listener (which the berth must have been started with,
// e.g. --metrics-address 127.0.0.1:0).

var metricsAddrRE = regexp.MustCompile(`serving metrics.*address=([0-9.:\[\]a-f]+)`)

// MetricsAddr is the address of the berth's metrics listener, as its log
// (of the current run) states it.
func (b *Berth) MetricsAddr() (string, error) {
	m := metricsAddrRE.FindAllStringSubmatch(b.Log(), -1)
	if len(m) == 0 {
		return "", fmt.Errorf("berth logged no metrics address (start it with --metrics-address 127.0.0.1:0)")
	}
	return m[len(m)-1][1], nil
}

// HTTPGet fetches path from the berth's metrics listener.
func (b *Berth) HTTPGet(path string) (string, error) {
	addr, err := b.MetricsAddr()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), nil
}

var goroutineTotalRE = regexp.MustCompile(`goroutine profile: total (\d+)`)

// Goroutines is the berth's goroutine count (from /debug/pprof/goroutine).
func (b *Berth) Goroutines() (int, error) {
	body, err := b.HTTPGet("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	m := goroutineTotalRE.FindStringSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no goroutine total in the profile")
	}
	return strconv.Atoi(m[1])
}

// GoroutineProfile is the berth's goroutine profile, grouped by stack, for
// a failure message.
func (b *Berth) GoroutineProfile() string {
	body, err := b.HTTPGet("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	return body
}

var heapInuseRE = regexp.MustCompile(`# HeapInuse = (\d+)`)

// HeapInuse runs a garbage collection in the berth and returns its heap in
// use afterwards, in bytes (from /debug/pprof/heap?gc=1).
func (b *Berth) HeapInuse() (int64, error) {
	body, err := b.HTTPGet("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	m := heapInuseRE.FindStringSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no HeapInuse in the heap profile")
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// FDs lists the berth's open file descriptors: number → what it refers to.
func (b *Berth) FDs() (map[string]string, error) {
	dir := fmt.Sprintf("/proc/%d/fd", b.Pid())
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(dir, e.Name()))
		out[e.Name()] = target
	}
	return out, nil
}

// RSS is the berth's resident set size in bytes.
func (b *Berth) RSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.Pid()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", b.Pid())
}

// TCPListeners lists the addresses (ip:port) the berth process listens on
// over TCP, from /proc/net/tcp{,6} and the process's socket inodes.
func (b *Berth) TCPListeners() ([]string, error) {
	fds, err := b.FDs()
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, target := range fds {
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, file := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", b.Pid(), file))
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			addr, err := procNetAddr(f[1])
			if err != nil {
				return nil, err
			}
			out = append(out, addr)
		}
	}
	return out, nil
}

// procNetAddr decodes an address of /proc/net/tcp ("0100007F:1F90").
func procNetAddr(s string) (string, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(hexIP)
	if err != nil {
		return "", err
	}
	// The kernel prints each 32-bit word in host (little-endian) order.
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(net.IP(raw).String(), strconv.FormatUint(port, 10)), nil
}
