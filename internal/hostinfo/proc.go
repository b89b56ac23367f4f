package hostinfo

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// User is the identity a process runs with.
type User struct {
	UID, GID int64
	Groups   []int64
}

// ProcessUser reads the real uid, gid and supplementary groups of pid from
// /proc, as the kernel has them.
func ProcessUser(pid int) (User, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return User{}, err
	}
	defer f.Close()
	var u User
	var seen int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		switch key {
		case "Uid":
			if len(fields) > 0 {
				u.UID, _ = strconv.ParseInt(fields[0], 10, 64)
				seen++
			}
		case "Gid":
			if len(fields) > 0 {
				u.GID, _ = strconv.ParseInt(fields[0], 10, 64)
				seen++
			}
		case "Groups":
			for _, g := range fields {
				if n, err := strconv.ParseInt(g, 10, 64); err == nil {
					u.Groups = append(u.Groups, n)
				}
			}
		}
	}
	if seen < 2 {
		return User{}, fmt.Errorf("/proc/%d/status has no Uid/Gid", pid)
	}
	return u, sc.Err()
}
