package sockdiag

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Acceptor returns the pid of the process (found under procRoot) holding
// the other end of conn, a connection to a unix socket: the process that
// accepted it, e.g. dockerd. SO_PEERCRED would name the process that
// called listen, which under socket activation is systemd. The connection
// must have been accepted already (an answered request proves it).
func Acceptor(procRoot string, conn *net.UnixConn) (int, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	var statErr error
	if err := raw.Control(func(fd uintptr) { statErr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	if statErr != nil {
		return 0, fmt.Errorf("fstat of the connection: %w", statErr)
	}
	socks, err := unixSockets()
	if err != nil {
		return 0, err
	}
	var server uint32
	for _, s := range socks {
		if s.Peer == uint32(st.Ino) {
			server = s.Inode
			break
		}
	}
	if server == 0 {
		return 0, fmt.Errorf("the kernel lists no peer of this connection")
	}
	want := "socket:[" + strconv.FormatUint(uint64(server), 10) + "]"
	self := os.Getpid()
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && link == want {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds the accepted end of the connection (not in this PID namespace?)")
}
