// Package sockdiag finds which processes are connected to a unix socket,
// through the kernel's sock_diag interface (the peer of every connection
// the listener accepted) and the processes' file descriptors under /proc.
package sockdiag

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Constants of the kernel's unix_diag interface (linux/unix_diag.h), which
// x/sys/unix does not define.
const (
	udiagShowName = 0x1
	udiagShowPeer = 0x4
	unixDiagName  = 0
	unixDiagPeer  = 2
)

// unixSocket is one unix socket as the kernel's sock_diag reports it.
type unixSocket struct {
	Inode uint32
	// Name is the path the socket is bound to ("" for a client socket).
	// Sockets accepted by a listener carry the listener's name.
	Name string
	// Peer is the inode of the other end of a connected socket.
	Peer uint32
}

// unixSockets lists every unix socket in this network namespace with its
// bound name and peer, through NETLINK_SOCK_DIAG. /proc/net/unix lacks the
// peer, and the peer is the only way to tell which process is connected to
// a given listening path.
func unixSockets() ([]unixSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)

	// nlmsghdr (16 bytes) + unix_diag_req (24 bytes).
	req := make([]byte, 40)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1)
	req[16] = unix.AF_UNIX
	ne.PutUint32(req[20:], 0xffffffff) // every state
	ne.PutUint32(req[28:], udiagShowName|udiagShowPeer)
	ne.PutUint32(req[32:], 0xffffffff) // no cookie
	ne.PutUint32(req[36:], 0xffffffff)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}

	var out []unixSocket
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag reply: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag reply: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(ne.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("sock_diag: %w", syscall.Errno(-errno))
					}
				}
				continue
			}
			if s, ok := parseUnixDiagMsg(m.Data); ok {
				out = append(out, s)
			}
		}
	}
}

func parseUnixDiagMsg(data []byte) (unixSocket, bool) {
	// unix_diag_msg: family, type, state, pad (1 byte each), ino u32, cookie [2]u32.
	const hdr = 16
	if len(data) < hdr {
		return unixSocket{}, false
	}
	ne := binary.NativeEndian
	s := unixSocket{Inode: ne.Uint32(data[4:])}
	attrs := data[hdr:]
	for len(attrs) >= 4 {
		l := int(ne.Uint16(attrs[0:]))
		typ := ne.Uint16(attrs[2:])
		if l < 4 || l > len(attrs) {
			break
		}
		payload := attrs[4:l]
		switch typ {
		case unixDiagName:
			s.Name = strings.TrimRight(string(payload), "\x00")
		case unixDiagPeer:
			if len(payload) >= 4 {
				s.Peer = ne.Uint32(payload)
			}
		}
		attrs = attrs[min((l+3)&^3, len(attrs)):]
	}
	return s, true
}

// Holder is a process with a connection to a socket path.
type Holder struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// Serving is true for the process listening on the path (e.g. dockerd).
	Serving bool `json:"serving,omitempty"`
}

// Holders returns the processes (found under procRoot) connected to, or
// listening on, the unix socket at path, excluding the caller itself.
func Holders(procRoot, path string) ([]Holder, error) {
	socks, err := unixSockets()
	if err != nil {
		return nil, err
	}
	names := map[string]bool{path: true}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		names[filepath.Join(dir, filepath.Base(path))] = true
	}
	// The kernel reports the name as the server bound it: /var/run/x and
	// /run/x are the same file when /var/run links to /run.
	for _, alias := range []string{"/var/run/", "/run/"} {
		for n := range names {
			if rest, ok := strings.CutPrefix(n, alias); ok {
				other := "/run/"
				if alias == "/run/" {
					other = "/var/run/"
				}
				if sameFile(n, other+rest) {
					names[other+rest] = true
				}
			}
		}
	}
	server := map[uint32]bool{}
	client := map[uint32]bool{}
	for _, s := range socks {
		if names[s.Name] {
			server[s.Inode] = true
			if s.Peer != 0 {
				client[s.Peer] = true
			}
		}
	}
	if len(server) == 0 {
		return nil, nil
	}
	self := os.Getpid()
	byPID := map[int]*Holder{}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 32)
			if err != nil {
				continue
			}
			isServer, isClient := server[uint32(ino)], client[uint32(ino)]
			if !isServer && !isClient {
				continue
			}
			h := byPID[pid]
			if h == nil {
				comm, _ := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
				h = &Holder{PID: pid, Comm: strings.TrimSpace(string(comm))}
				byPID[pid] = h
			}
			if isServer {
				h.Serving = true
			}
		}
	}
	out := make([]Holder, 0, len(byPID))
	for _, h := range byPID {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
