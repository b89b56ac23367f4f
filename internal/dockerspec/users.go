package dockerspec

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// NeedsImageGroups reports whether Docker alone would miss supplementary
// groups Kubernetes' default (Merge) policy gives: when the pod names the
// primary group, runc adds none of the groups the image's /etc/group lists
// the user in, while containerd and CRI-O do.
func NeedsImageGroups(user string) bool {
	_, group, ok := strings.Cut(user, ":")
	return ok && group != ""
}

// ImageGroups returns the ids of the groups the image's /etc/group lists
// user (a Docker user spec, "name[:group]" or "uid[:group]") as a member
// of, resolving a uid to a name with /etc/passwd.
func ImageGroups(passwd, group []byte, user string) []int64 {
	who, _, _ := strings.Cut(user, ":")
	name := who
	if uid, err := strconv.Atoi(who); err == nil {
		name = ""
		eachLine(passwd, func(f []string) {
			if len(f) >= 3 && f[2] == strconv.Itoa(uid) && name == "" {
				name = f[0]
			}
		})
	}
	if name == "" {
		return nil
	}
	var out []int64
	eachLine(group, func(f []string) {
		if len(f) < 4 {
			return
		}
		for _, m := range strings.Split(f[3], ",") {
			if strings.TrimSpace(m) == name {
				if gid, err := strconv.ParseInt(f[2], 10, 64); err == nil {
					out = append(out, gid)
				}
				return
			}
		}
	})
	return out
}

func eachLine(data []byte, fn func(fields []string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
}
