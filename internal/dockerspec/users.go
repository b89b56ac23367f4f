package dockerspec

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
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

// CheckUsernsMappings compares the ID mappings a pod asked for with those
// of the user namespace Docker gave its pause container (the contents of
// /proc/<pid>/uid_map and gid_map). Docker maps every container the same
// way (dockerd --userns-remap), so a pod gets a user namespace only when it
// asks for exactly that mapping, or names none.
func CheckUsernsMappings(u *runtimeapi.UserNamespace, uidMap, gidMap []byte) error {
	const field = "config.linux.security_context.namespace_options.userns_options"
	for _, c := range []struct {
		name string
		want []*runtimeapi.IDMapping
		got  []byte
	}{{"uids", u.GetUids(), uidMap}, {"gids", u.GetGids(), gidMap}} {
		if len(c.want) == 0 {
			continue
		}
		got := parseIDMap(c.got)
		want := make([]idRange, 0, len(c.want))
		for _, m := range c.want {
			want = append(want, idRange{m.GetContainerId(), m.GetHostId(), m.GetLength()})
		}
		slices.SortFunc(want, func(a, b idRange) int { return cmp.Compare(a.inside, b.inside) })
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s.%s: the pod asks for %s, but Docker maps every container's %s as %s (dockerd --userns-remap is daemon-wide): %w",
				field, c.name, formatIDRanges(want), c.name, formatIDRanges(got), errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

// CheckWrapperMappings fails unless the pause container's user namespace
// (the contents of its uid_map and gid_map) has exactly the pod's
// mappings, which Berth's runtime wrapper was to apply. Anything else is a
// runtime that did not, and the pod must not run.
func CheckWrapperMappings(u *runtimeapi.UserNamespace, uidMap, gidMap []byte) error {
	for _, c := range []struct {
		name string
		want []*runtimeapi.IDMapping
		got  []byte
	}{{"uid_map", u.GetUids(), uidMap}, {"gid_map", u.GetGids(), gidMap}} {
		want := make([]idRange, 0, len(c.want))
		for _, m := range c.want {
			want = append(want, idRange{m.GetContainerId(), m.GetHostId(), m.GetLength()})
		}
		if got := parseIDMap(c.got); !slices.Equal(got, want) {
			return fmt.Errorf("%w: the pause container's %s is %s, not the pod's %s: Docker's runtime did not give it the pod's user namespace",
				errdefs.ErrInternal, c.name, formatIDRanges(got), formatIDRanges(want))
		}
	}
	return nil
}

// idRange is one line of a uid_map or gid_map.
type idRange struct{ inside, outside, length uint32 }

func parseIDMap(data []byte) []idRange {
	var out []idRange
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		var v [3]uint64
		ok := true
		for i := range f {
			n, err := strconv.ParseUint(f[i], 10, 32)
			ok = ok && err == nil
			v[i] = n
		}
		if ok {
			out = append(out, idRange{uint32(v[0]), uint32(v[1]), uint32(v[2])})
		}
	}
	slices.SortFunc(out, func(a, b idRange) int { return cmp.Compare(a.inside, b.inside) })
	return out
}

func formatIDRanges(rs []idRange) string {
	if len(rs) == 0 {
		return "no mapping (the host's user namespace)"
	}
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%d-%d → host %d-%d", r.inside, r.inside+r.length-1, r.outside, r.outside+r.length-1))
	}
	return strings.Join(parts, ", ")
}

// StrictUser is user (a Docker user spec; "" means root) with its primary
// group named, from the image's /etc/passwd, so that runc adds none of the
// groups the image's /etc/group lists the user in — Kubernetes'
// SupplementalGroupsPolicy Strict. A uid the image does not know gets
// group 0, as runc gives it; a name it does not know is left for Docker to
// refuse.
func StrictUser(passwd []byte, user string) string {
	if user == "" {
		user = "0"
	}
	if NeedsImageGroups(user) {
		return user
	}
	gid := ""
	eachLine(passwd, func(f []string) {
		if gid == "" && len(f) >= 4 && (f[0] == user || f[2] == user) {
			gid = f[3]
		}
	})
	if gid == "" {
		if _, err := strconv.Atoi(user); err != nil {
			return user
		}
		gid = "0"
	}
	return user + ":" + gid
}
