// Package process finds and signals host processes through /proc, for what
// Docker has no API for: killing an exec whose caller gave up on it (Docker
// can kill a container, not one exec'd process).
package process

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procRoot is where procfs is mounted; tests may point it elsewhere.
var procRoot = "/proc"

// PidNamespace names pid's pid namespace ("pid:[4026531836]"), to tell
// whether two processes share one.
func PidNamespace(pid int) (string, error) {
	return os.Readlink(fmt.Sprintf("%s/%d/ns/pid", procRoot, pid))
}

// KillSession sends SIGKILL to leader and to every process of its session
// (its descendants, unless they started a session of their own, including
// those orphaned when their parent died) that lives in the pid namespace ns
// (as PidNamespace names it; "" skips the check). It rescans until a scan
// finds no live process left, so processes forked meanwhile are caught, and
// returns how many signals it sent.
//
// NOTE: Docker starts every exec'd process as the leader of a new session
// (runc calls setsid for it), so the session is the exec's process tree.
// The namespace check guards against a recycled pid: between Docker
// reporting the exec's pid and this call the process may have exited and
// its pid been reused by an unrelated host process.
func KillSession(leader int, ns string) (int, error) {
	if leader <= 1 {
		return 0, fmt.Errorf("refusing to kill session %d", leader)
	}
	sent := 0
	for round := 0; round < 50; round++ {
		pids, err := sessionMembers(leader, ns)
		if err != nil {
			return sent, err
		}
		if len(pids) == 0 {
			return sent, nil
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				sent++
			} else if !errors.Is(err, syscall.ESRCH) {
				return sent, fmt.Errorf("killing %d: %w", pid, err)
			}
		}
		time.Sleep(time.Duration(round+1) * 5 * time.Millisecond)
	}
	return sent, fmt.Errorf("session %d still has live processes after repeated SIGKILLs", leader)
}

// sessionMembers lists the live (not zombie) processes of leader's session
// in the pid namespace ns.
func sessionMembers(leader int, ns string) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		if pid != leader && st.session != leader {
			continue
		}
		if st.state == 'Z' || st.state == 'X' {
			continue
		}
		if ns != "" {
			if got, err := PidNamespace(pid); err != nil || got != ns {
				continue
			}
		}
		out = append(out, pid)
	}
	return out, nil
}

type stat struct {
	state   byte
	session int
}

// readStat parses the state and session id out of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted from its closing parenthesis.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
	if err != nil {
		return stat{}, err
	}
	return parseStat(string(b))
}

func parseStat(s string) (stat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("malformed stat %q", s)
	}
	// After ")": state ppid pgrp session ...
	f := strings.Fields(s[i+1:])
	if len(f) < 4 || len(f[0]) != 1 {
		return stat{}, fmt.Errorf("malformed stat %q", s)
	}
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		return stat{}, fmt.Errorf("malformed stat %q", s)
	}
	return stat{state: f[0][0], session: sid}, nil
}
