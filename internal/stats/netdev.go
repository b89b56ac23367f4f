package stats

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Interface is one network interface's cumulative counters.
type Interface struct {
	Name      string
	RxBytes   uint64
	RxPackets uint64
	RxErrors  uint64
	RxDropped uint64
	TxBytes   uint64
	TxPackets uint64
	TxErrors  uint64
	TxDropped uint64
}

// NetDev reads the interfaces of the network namespace process pid is in,
// from /proc/<pid>/net/dev: the kernel shows each process the devices of
// its own namespace, so no setns is needed. The loopback is left out.
func NetDev(pid int) ([]Interface, error) {
	return NetDevFiles(pid, nil)
}

// NetDevFiles is NetDev reading through files (kept open between calls)
// when it is not nil.
func NetDevFiles(pid int, files *OpenFiles) ([]Interface, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/net/dev"
	if files == nil {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		return ParseNetDev(data)
	}
	buf := getBuf()
	defer putBuf(buf)
	data, err := files.read(path, buf)
	if err != nil {
		return nil, err
	}
	return ParseNetDev(data)
}

// ParseNetDev parses /proc/net/dev: two header lines, then
// "  eth0: rxbytes rxpackets rxerrs rxdrop fifo frame compressed multicast
// txbytes txpackets txerrs txdrop …" per interface. The loopback is left
// out, as cAdvisor does.
func ParseNetDev(data []byte) ([]Interface, error) {
	var out []Interface
	for i, line := range bytes.Split(data, []byte{'\n'}) {
		if i < 2 {
			continue // headers
		}
		name, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		n := string(bytes.TrimSpace(name))
		if n == "lo" {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 12 {
			return nil, fmt.Errorf("malformed net/dev line %q", line)
		}
		var v [12]uint64
		for j := range v {
			x, ok := atou(f[j])
			if !ok {
				return nil, fmt.Errorf("malformed net/dev field %q of %s", f[j], n)
			}
			v[j] = x
		}
		out = append(out, Interface{
			Name:    n,
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	return out, nil
}
