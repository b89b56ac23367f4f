package logs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/panics"
)

// setup gives a fake Docker log, a CRI path in a pod log directory that
// does not exist yet, and a state directory.
func setup(t *testing.T) (d *fakeDocker, criPath, stateDir string) {
	root := t.TempDir()
	d = newFakeDocker(t, root, "c0ffee")
	criPath = filepath.Join(root, "pods", "ns_pod_uid", "app", "0.log")
	return d, criPath, filepath.Join(root, "state")
}

func TestForwardFormat(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)

	var want []criLine
	add := func(stream, log string) {
		ts := d.write(stream, log)
		e := entry{Log: []byte(log), Stream: []byte(stream), Time: []byte(ts)}
		for _, l := range strings.SplitAfter(string(appendCRI(nil, &e)), "\n") {
			if l == "" {
				continue
			}
			mm := criRE.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
			want = append(want, criLine{ts: mm[1], stream: mm[2], tag: mm[3][0], content: mm[4]})
		}
	}
	add("stdout", "hello\n")
	add("stderr", "error: it broke\n")
	// A 40 KiB line: Docker writes it as 16 KiB + 16 KiB without newline
	// and the rest with it; the CRI file has P, P, F.
	long := strings.Repeat("0123456789abcdef", 40<<10/16)
	add("stdout", long[:16<<10])
	add("stdout", long[16<<10:32<<10])
	add("stdout", long[32<<10:]+"\n")
	// A TTY container: one stream, called stdout; "\r\n" line ends.
	add("stdout", "$ ls\r\n")
	add("stdout", "\x1b[1mbold\x1b[0m\r\n")
	// The last output without a newline is partial.
	add("stdout", "no newline at exit")

	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, "all lines", func() bool { return countLines(t, criPath) == len(want) })
	got := readCRI(t, criPath)
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %+v\nwant %+v", i, short(got[i]), short(want[i]))
		}
	}
	tags := ""
	for _, l := range got[2:5] {
		tags += string(l.tag)
	}
	if tags != "PPF" || got[2].content+got[3].content+got[4].content != long {
		t.Errorf("long line: tags %s, joined content equal: %v", tags, got[2].content+got[3].content+got[4].content == long)
	}
	if got[1].stream != "stderr" || got[5].content != "$ ls\r" || got[len(got)-1].tag != 'P' {
		t.Errorf("stderr/tty/partial: %+v %+v %+v", got[1], got[5], got[len(got)-1])
	}
	fi, err := os.Stat(criPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("CRI log mode %v, want 0640", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Dir(criPath))
	if di.Mode().Perm() != 0o755 {
		t.Errorf("log directory mode %v, want 0755", di.Mode().Perm())
	}
	si, _ := os.Stat(stateDir)
	if si.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want 0700", si.Mode().Perm())
	}
}

func short(l criLine) criLine {
	if len(l.content) > 40 {
		l.content = l.content[:40] + "…"
	}
	return l
}

// TestSkipsBadLines: lines that are not Docker entries (a dockerd crash in
// the middle of a write) are skipped, the rest forwarded.
func TestSkipsBadLines(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	seqLines(d, 0, 3)
	d.writeRaw(`{"log":"cut sho` + "\n")
	seqLines(d, 3, 6)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 6 })
	checkSeq(t, readCRI(t, criPath), 6)
}

// TestReopenWhileWriting: a container writes continuously while kubelet
// rotates its log many times (rename, then ReopenContainerLog) and Docker
// rotates its json file too; every line is in exactly one CRI file, in
// order, and each Reopen left every line written before it in the old file.
func TestReopenWhileWriting(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	const total = 30000
	var written atomic.Int64
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total && !stop.Load(); i++ {
			seqLines(d, i, i+1)
			written.Store(int64(i + 1))
			if i%2000 == 1999 {
				d.rotate()
			}
		}
	}()
	t.Cleanup(func() { stop.Store(true); <-done })
	rotations, lastSeen := 0, -1
	for {
		select {
		case <-done:
		default:
			before := written.Load()
			rotations++
			old := kubeletRotate(t, criPath, rotations)
			if err := m.Reopen(d.id); err != nil {
				t.Fatal(err)
			}
			// Everything written before the rename is in the old
			// file or an earlier one.
			if lines := readCRI(t, old); len(lines) > 0 {
				fmt.Sscanf(lines[len(lines)-1].content, "line %06d", &lastSeen)
			}
			if int64(lastSeen) < before-1 {
				t.Fatalf("after Reopen %d the old files end at line %d; %d lines had been written", rotations, lastSeen, before)
			}
			continue
		}
		break
	}
	if rotations < 10 {
		t.Logf("only %d rotations happened during the writes", rotations)
	}
	eventually(t, "all lines", func() bool { return countLines(t, criPath) == total })
	checkSeq(t, allLines(t, criPath), total)
	t.Logf("%d kubelet rotations, %d files", rotations, len(criFiles(t, criPath)))
}

func TestReopenNotFollowed(t *testing.T) {
	_, _, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	err := m.Reopen("deadbeef")
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Reopen of an unknown container = %v, want FailedPrecondition", err)
	}
}

// TestRestartResume: Berth shuts down and starts again while the container
// keeps writing and Docker rotates its file.
func TestRestartResume(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	seqLines(d, 0, 1000)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first lines", func() bool { return countLines(t, criPath) == 1000 })
	seqLines(d, 1000, 1500)
	m.Close()

	// While Berth is down.
	seqLines(d, 1500, 2000)
	d.rotate()
	seqLines(d, 2000, 2500)
	d.rotate()
	seqLines(d, 2500, 3000)

	m2 := testManager(t, stateDir, nil)
	if err := m2.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	if err := m2.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatalf("second Follow: %v", err)
	}
	seqLines(d, 3000, 3500)
	eventually(t, "all lines", func() bool { return countLines(t, criPath) == 3500 })
	checkSeq(t, readCRI(t, criPath), 3500)
}

// crashAt runs a manager that forwards lines 0..at-1 and saves its
// position, then keeps forwarding lines at..upto-1 and shuts down; then
// the position saved at the first moment is put back. This is the state a
// crash leaves: lines in the CRI file past the saved position.
func crashAt(t *testing.T, d *fakeDocker, criPath, stateDir string, at, upto int) {
	t.Helper()
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	seqLines(d, 0, at)
	eventually(t, "lines", func() bool { return countLines(t, criPath) == at })
	statePath := filepath.Join(stateDir, d.id+".json")
	var early []byte
	eventually(t, "saved position", func() bool {
		p, err := m.states.load(d.id)
		if err != nil || p == nil {
			return false
		}
		f, err := os.Stat(d.path)
		if err != nil || p.Docker.Off != f.Size() {
			return false
		}
		early, err = os.ReadFile(statePath)
		return err == nil
	})
	seqLines(d, at, upto)
	eventually(t, "more lines", func() bool { return countLines(t, criPath) == upto })
	m.Close()
	if err := os.WriteFile(statePath, early, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCrashResume(t *testing.T) {
	for _, tc := range []struct {
		name string
		// damage changes the files after the crash; it returns how
		// many lines (from the start) the CRI log files must hold
		// before the resumed Berth writes more.
		damage func(t *testing.T, d *fakeDocker, criPath, stateDir string)
		// wantLog: what recovery must report, so the test knows
		// which path it took.
		wantLog []string
	}{
		{name: "lines past the saved position", damage: func(*testing.T, *fakeDocker, string, string) {},
			wantLog: []string{verifying}},
		{name: "last line cut short", damage: func(t *testing.T, d *fakeDocker, criPath, _ string) {
			cutLastLine(t, criPath)
		}, wantLog: []string{verifying, "completing a log line cut short"}},
		{name: "position file lost", damage: func(t *testing.T, d *fakeDocker, _, stateDir string) {
			os.Remove(filepath.Join(stateDir, d.id+".json"))
		}, wantLog: []string{matched}},
		{name: "position file lost and last line cut", damage: func(t *testing.T, d *fakeDocker, criPath, stateDir string) {
			os.Remove(filepath.Join(stateDir, d.id+".json"))
			cutLastLine(t, criPath)
		}, wantLog: []string{"removed a log line cut short", matched}},
		{name: "position file corrupt", damage: func(t *testing.T, d *fakeDocker, _, stateDir string) {
			os.WriteFile(filepath.Join(stateDir, d.id+".json"), []byte("{\x00\x00"), 0o600)
		}, wantLog: []string{"ignoring the saved log position", matched}},
		{name: "Docker rotated while down", damage: func(t *testing.T, d *fakeDocker, _, _ string) {
			d.rotate()
		}, wantLog: []string{verifying}},
		{name: "position file lost, Docker rotated while down", damage: func(t *testing.T, d *fakeDocker, _, stateDir string) {
			os.Remove(filepath.Join(stateDir, d.id+".json"))
			d.rotate()
		}, wantLog: []string{matched}},
		{name: "kubelet renamed the file, then Berth crashed before ReopenContainerLog", damage: func(t *testing.T, d *fakeDocker, criPath, _ string) {
			kubeletRotate(t, criPath, 1)
		}, wantLog: []string{verifying}},
		{name: "garbage after the saved position", damage: func(t *testing.T, d *fakeDocker, criPath, _ string) {
			f, err := os.OpenFile(criPath, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("\x00\x00\x00\x00")
			f.Close()
		}, wantLog: []string{verifying, "does not match"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, criPath, stateDir := setup(t)
			crashAt(t, d, criPath, stateDir, 300, 700)
			tc.damage(t, d, criPath, stateDir)
			seqLines(d, 700, 800) // written while Berth was down
			log, tl := newTestLogger(t)
			m := testManager(t, stateDir, log)
			if err := m.Follow(d.id, d.path, criPath, running); err != nil {
				t.Fatal(err)
			}
			seqLines(d, 800, 1000)
			eventually(t, "all lines", func() bool { return countLines(t, criPath) >= 1000 })
			m.Close()
			checkSeq(t, allLines(t, criPath), 1000)
			for _, w := range tc.wantLog {
				if !tl.has(w) {
					t.Errorf("no log record saying %q", w)
				}
			}
		})
	}
}

const (
	verifying = "checking lines written after the saved position"
	matched   = "resuming log forwarding after the last line already in the CRI log file"
)

// cutLastLine truncates the CRI file in the middle of its last line, as a
// crash in the middle of a write leaves it.
func cutLastLine(t *testing.T, criPath string) {
	data, err := os.ReadFile(criPath)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(string(data[:len(data)-1]), '\n')
	if err := os.Truncate(criPath, int64(i+1+(len(data)-i-1)/2)); err != nil {
		t.Fatal(err)
	}
}

// TestDockerRotatedAwayWhileDown: the file Berth was reading was deleted by
// Docker's rotation (max-file) while Berth was down. Its unread lines are
// lost and reported; everything still in Docker's files is forwarded once.
func TestDockerRotatedAwayWhileDown(t *testing.T) {
	d, criPath, stateDir := setup(t)
	d.maxFiles = 2
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	seqLines(d, 0, 100)
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 100 })
	m.Close()
	seqLines(d, 100, 200) // lost: rotated away below
	d.rotate()
	seqLines(d, 200, 300) // lost too
	d.rotate()
	seqLines(d, 300, 400)
	d.rotate()
	seqLines(d, 400, 500)

	log, tl := newTestLogger(t)
	m2 := testManager(t, stateDir, log)
	if err := m2.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 300 })
	m2.Close()
	lines := readCRI(t, criPath)
	checkSeq(t, lines[:100], 100)
	for i, l := range lines[100:] {
		if want := fmt.Sprintf("line %06d", 300+i); l.content != want {
			t.Fatalf("line %d = %q, want %q", 100+i, l.content, want)
		}
	}
	if !tl.has("lines may have been lost") {
		t.Errorf("the loss was not reported")
	}
}

// TestDockerMaxFileOne: with max-file=1 current Docker deletes the file and
// starts a new one; Berth finishes the old one through its descriptor (it
// has it open as long as it keeps up: after each rotation it has the file
// open before the next one).
func TestDockerMaxFileOne(t *testing.T) {
	d, criPath, stateDir := setup(t)
	d.maxFiles = 1
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		seqLines(d, i*100, i*100+50)
		eventually(t, "lines", func() bool { return countLines(t, criPath) == i*100+50 })
		seqLines(d, i*100+50, i*100+100) // not read yet when Docker deletes the file
		d.rotate()
	}
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 2000 })
	checkSeq(t, readCRI(t, criPath), 2000)
}

func TestExitedDrainsThenStops(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	seqLines(d, 0, 100)
	m.Exited(d.id)
	m.Exited(d.id)
	seqLines(d, 100, 120) // Docker flushing the last entries after the exit event
	eventually(t, "the follower to stop", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.followers[d.id] == nil
	})
	checkSeq(t, readCRI(t, criPath), 120)
	if err := m.Reopen(d.id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Reopen after exit = %v, want FailedPrecondition", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, d.id+".json")); err != nil {
		t.Errorf("position not kept: %v", err)
	}

	// Berth restarted later: Follow of a stopped container forwards what
	// is left (nothing here but a line written late) and stops.
	seqLines(d, 120, 121)
	if err := m.Follow(d.id, d.path, criPath, notRunning); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the follower to stop again", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.followers[d.id] == nil
	})
	checkSeq(t, readCRI(t, criPath), 121)
}

func TestForget(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	seqLines(d, 0, 10)
	statePath := filepath.Join(stateDir, d.id+".json")
	eventually(t, "saved position", func() bool { _, err := os.Stat(statePath); return err == nil })
	m.Forget(d.id)
	if _, err := os.Stat(statePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after Forget: %v", err)
	}
	m.mu.Lock()
	n := len(m.followers) + len(m.dirs)
	m.mu.Unlock()
	if n != 0 {
		t.Errorf("Forget left %d followers/watches", n)
	}
	if err := m.Reopen(d.id); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Reopen after Forget = %v", err)
	}
	m.Forget(d.id) // again: no-op
	// A container that had exited (no follower) is forgotten too.
	if err := m.states.save("0123abcd", &position{Version: stateVersion}); err != nil {
		t.Fatal(err)
	}
	m.Forget("0123abcd")
	if _, err := os.Stat(filepath.Join(stateDir, "0123abcd.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state of an exited container after Forget: %v", err)
	}
}

// TestSymlinkAtCRIPath: cri-dockerd left the CRI path as a symlink to
// Docker's json file. Berth replaces the link by a regular file and never
// writes through it.
func TestSymlinkAtCRIPath(t *testing.T) {
	d, criPath, stateDir := setup(t)
	seqLines(d, 0, 50)
	if err := os.MkdirAll(filepath.Dir(criPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(d.path, criPath); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(d.path)
	outside := filepath.Join(t.TempDir(), "outside")
	other := filepath.Join(filepath.Dir(criPath), "1.log")
	if err := os.Symlink(outside, other); err != nil { // dangling
		t.Fatal(err)
	}

	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 50 })
	fi, err := os.Lstat(criPath)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("CRI path is %v (%v), want a regular file", fi.Mode(), err)
	}
	// Docker's history is forwarded, so kubectl logs still shows it.
	checkSeq(t, readCRI(t, criPath), 50)
	after, _ := os.ReadFile(d.path)
	if string(after) != string(before) {
		t.Errorf("Docker's json file was written to")
	}

	d2 := newFakeDocker(t, filepath.Dir(filepath.Dir(d.dir)), "d2")
	seqLines(d2, 0, 5)
	if err := m.Follow(d2.id, d2.path, other, running); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lines", func() bool { return countLines(t, other) == 5 })
	if _, err := os.Lstat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was created at the link's target: %v", err)
	}

	// A symlink planted at the path before a Reopen is replaced too.
	kubeletRotate(t, criPath, 1)
	if err := os.Symlink(d.path, criPath); err != nil {
		t.Fatal(err)
	}
	if err := m.Reopen(d.id); err != nil {
		t.Fatal(err)
	}
	seqLines(d, 50, 60)
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 60 })
	checkSeq(t, allLines(t, criPath), 60)
	if fi, err := os.Lstat(criPath); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("CRI path after Reopen is not a regular file")
	}
}

func TestFollowValidates(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	for _, tc := range []struct {
		id, docker, cri string
		want            error
	}{
		{"../x", d.path, criPath, errdefs.ErrInvalidArgument},
		{"", d.path, criPath, errdefs.ErrInvalidArgument},
		{d.id, d.path, "relative/0.log", errdefs.ErrInvalidArgument},
		{d.id, "relative.log", criPath, errdefs.ErrFailedPrecondition},
	} {
		if err := m.Follow(tc.id, tc.docker, tc.cri, running); !errors.Is(err, tc.want) {
			t.Errorf("Follow(%q, %q, %q) = %v, want %v", tc.id, tc.docker, tc.cri, err, tc.want)
		}
	}
	// Docker's own file (a hard link to it here) is refused.
	link := filepath.Join(filepath.Dir(criPath), "hard.log")
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Link(d.path, link); err != nil {
		t.Fatal(err)
	}
	if err := m.Follow(d.id, d.path, link, running); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Follow into Docker's file = %v, want InvalidArgument", err)
	}
	// A directory at the CRI path is refused, not written into.
	dir := filepath.Join(filepath.Dir(criPath), "dir.log")
	os.MkdirAll(dir, 0o755)
	if err := m.Follow(d.id, d.path, dir, running); err == nil {
		t.Errorf("Follow into a directory succeeded")
	}
	m.Close()
	if err := m.Follow(d.id, d.path, criPath, running); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Follow after Close = %v, want Unavailable", err)
	}
}

// TestDockerLogAppearsLater: Follow before Docker created its file (the
// container is starting).
func TestDockerLogAppearsLater(t *testing.T) {
	root := t.TempDir()
	m := testManager(t, filepath.Join(root, "state"), nil)
	path := filepath.Join(root, "containers", "late", "late-json.log")
	criPath := filepath.Join(root, "pods", "p", "c", "0.log")
	if err := m.Follow("late", path, criPath, running); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(criPath); err != nil {
		t.Fatalf("CRI log file not created by Follow: %v", err)
	}
	d := newFakeDocker(t, root, "late")
	seqLines(d, 0, 10)
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 10 })
	checkSeq(t, readCRI(t, criPath), 10)
}

// TestIdleFollowersCostNothing: 200 followed containers that write nothing
// cause no reads and no worker turns; only the cheap poll runs.
func TestIdleFollowersCostNothing(t *testing.T) {
	root := t.TempDir()
	m := testManager(t, filepath.Join(root, "state"), nil)
	const n = 200
	ds := make([]*fakeDocker, n)
	for i := range ds {
		ds[i] = newFakeDocker(t, root, fmt.Sprintf("c%03d", i))
		seqLines(ds[i], 0, 3)
		cri := filepath.Join(root, "pods", ds[i].id, "0.log")
		if err := m.Follow(ds[i].id, ds[i].path, cri, running); err != nil {
			t.Fatal(err)
		}
	}
	for i := range ds {
		cri := filepath.Join(root, "pods", ds[i].id, "0.log")
		eventually(t, "lines", func() bool { return countLines(t, cri) == 3 })
	}
	// Let the last events and the first save settle: no turn for five
	// ticks in a row.
	lastTurns, lastTick, quiet := m.stats.turns.Load(), m.stats.ticks.Load(), 0
	eventually(t, "quiet", func() bool {
		if tk := m.stats.ticks.Load(); tk != lastTick {
			lastTick = tk
			if tr := m.stats.turns.Load(); tr != lastTurns {
				lastTurns, quiet = tr, 0
			} else {
				quiet++
			}
		}
		return quiet >= 5
	})

	turns, reads, ticks := m.stats.turns.Load(), m.stats.reads.Load(), m.stats.ticks.Load()
	eventually(t, "20 idle ticks", func() bool { return m.stats.ticks.Load() >= ticks+20 })
	if dt, dr := m.stats.turns.Load()-turns, m.stats.reads.Load()-reads; dt != 0 || dr != 0 {
		t.Errorf("idle followers: %d turns and %d reads over %d ticks", dt, dr, m.stats.ticks.Load()-ticks)
	}

	// One container writing wakes that one only.
	turns = m.stats.turns.Load()
	seqLines(ds[7], 3, 4)
	cri := filepath.Join(root, "pods", ds[7].id, "0.log")
	eventually(t, "line", func() bool { return countLines(t, cri) == 4 })
	if dt := m.stats.turns.Load() - turns; dt > 3 {
		t.Errorf("one line in one container took %d turns", dt)
	}
}

// TestWriteFailureBoundsMemory: while the CRI file cannot be written (disk
// full), Berth reads no further than one batch ahead, and once writes work
// again, every line arrives exactly once.
func TestWriteFailureBoundsMemory(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	seqLines(d, 0, 10)
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 10 })

	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	f := m.followers[d.id]
	m.mu.Unlock()
	// Hold the follower while the container writes ~3 MB, so that its
	// first turn finds a lot to read and fills its buffer.
	f.mu.Lock()
	good := f.sink
	f.sink = full
	seqLines(d, 10, 50000)
	f.mu.Unlock()
	var out, srcOff int64
	eventually(t, "a failed write", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		out, srcOff = int64(cap(f.out)), f.srcOff
		return len(f.out) > 0
	})
	ticks := m.stats.ticks.Load()
	eventually(t, "retries", func() bool { return m.stats.ticks.Load() >= ticks+5 })
	f.mu.Lock()
	if int64(cap(f.out)) > 2*flushAt || f.srcOff != srcOff {
		t.Errorf("while writes fail: %d bytes buffered (cap), read position moved %d → %d", cap(f.out), srcOff, f.srcOff)
	}
	_ = out
	f.sink = good
	f.mu.Unlock()
	full.Close()
	eventually(t, "all lines", func() bool { return countLines(t, criPath) == 50000 })
	checkSeq(t, readCRI(t, criPath), 50000)
}

// TestManyContainersConcurrently: containers write, rotate and are
// reopened at the same time.
func TestManyContainersConcurrently(t *testing.T) {
	root := t.TempDir()
	m := testManager(t, filepath.Join(root, "state"), nil)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		d := newFakeDocker(t, root, fmt.Sprintf("m%02d", i))
		cri := filepath.Join(root, "pods", d.id, "0.log")
		if err := m.Follow(d.id, d.path, cri, running); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for k := 0; k < 10; k++ {
				seqLines(d, k*200, k*200+200)
				if k%3 == 2 {
					d.rotate()
				}
				if k%4 == 1 {
					kubeletRotate(t, cri, k)
					if err := m.Reopen(d.id); err != nil {
						t.Error(err)
					}
				}
			}
		}(i)
	}
	wg.Wait()
	for i := 0; i < 20; i++ {
		cri := filepath.Join(root, "pods", fmt.Sprintf("m%02d", i), "0.log")
		eventually(t, "lines", func() bool { return countLines(t, cri) == 2000 })
		checkSeq(t, allLines(t, cri), 2000)
	}
}

// TestCrashResumeAcrossAGap: recovery is comparing the CRI file with the
// entries after the saved position when the Docker file it reads, and the
// one after it, turn out to have been rotated away: entries are missing, so
// recovery must not go on comparing (a mismatch would truncate lines that
// now exist nowhere else) but look for the CRI file's end instead. The steps are driven
// by hand (no workers) so the rotation happens at that exact moment.
func TestCrashResumeAcrossAGap(t *testing.T) {
	d, criPath, stateDir := setup(t)
	m := testManager(t, stateDir, nil)
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	seqLines(d, 0, 300)
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 300 })
	statePath := filepath.Join(stateDir, d.id+".json")
	var early []byte
	eventually(t, "saved position", func() bool {
		p, err := m.states.load(d.id)
		if err != nil || p == nil || p.Docker.Off == 0 {
			return false
		}
		fi, _ := os.Stat(d.path)
		early, _ = os.ReadFile(statePath)
		return p.Docker.Off == fi.Size()
	})
	seqLines(d, 300, 500)
	d.rotate()
	seqLines(d, 500, 700)
	eventually(t, "lines", func() bool { return countLines(t, criPath) == 700 })
	m.Close()
	os.WriteFile(statePath, early, 0o600)
	d.rotate()
	seqLines(d, 700, 800)

	log, tl := newTestLogger(t)
	m2, err := newManager(stateDir, log, options{tick: 50 * time.Millisecond, exitGrace: time.Hour, workers: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	f := m2.followers[d.id]
	f.mu.Lock()
	if ok, err := f.reconcile(); !ok || err != nil || f.verify == nil {
		f.mu.Unlock()
		t.Fatalf("reconcile = %v, %v; verifying: %v", ok, err, f.verify != nil)
	}
	// Docker rotates away the file Berth has open and the next one, whose
	// lines (500-699) are only in the CRI file now.
	os.Remove(d.path + ".2")
	os.Remove(d.path + ".1")
	_, err = f.forward(1 << 30)
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	checkSeq(t, readCRI(t, criPath), 800)
	for _, w := range []string{verifying, "has a gap", "could not find the end"} {
		if !tl.has(w) {
			t.Errorf("no log record saying %q", w)
		}
	}
}

// A symbolic link or a FIFO planted where a container's position file goes
// is neither followed nor waited on: the position is ignored (forwarding
// starts over by matching the CRI file) and the next save replaces the
// planted file, not what a link points to.
func TestPlantedPositionFiles(t *testing.T) {
	for _, kind := range []string{"symlink", "fifo"} {
		t.Run(kind, func(t *testing.T) {
			d, criPath, stateDir := setup(t)
			seqLines(d, 0, 10)
			if err := os.MkdirAll(stateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			outside := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			planted := filepath.Join(stateDir, d.id+".json")
			var err error
			if kind == "symlink" {
				err = os.Symlink(outside, planted)
			} else {
				err = unix.Mkfifo(planted, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, planted+".tmp"); err != nil {
				t.Fatal(err)
			}
			m := testManager(t, stateDir, nil)
			followed := make(chan error, 1)
			go func() { followed <- m.Follow(d.id, d.path, criPath, running) }()
			select {
			case err := <-followed:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Follow hangs on the planted position file")
			}
			eventually(t, "lines", func() bool { return countLines(t, criPath) == 10 })
			m.Close()
			if data, _ := os.ReadFile(outside); string(data) != "keep" {
				t.Errorf("wrote through a planted link: %q", data)
			}
			if fi, err := os.Lstat(planted); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("the position file is %v (%v) after a save, want a regular file", fi, err)
			}
		})
	}
}

// TestForwardingGoesOnAfterAPanic: a panic in a worker's turn (or in the
// tick, or an inotify wake-up) ends only that round; the tick retries.
func TestForwardingGoesOnAfterAPanic(t *testing.T) {
	d, criPath, stateDir := setup(t)
	var mu sync.Mutex
	panicked := 0
	defer panics.SetHook(func(where string) {
		if where != panics.Logs {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if panicked < 3 {
			panicked++
			panic("boom")
		}
	})()
	m := testManager(t, stateDir, nil)
	d.write("stdout", "one\n")
	if err := m.Follow(d.id, d.path, criPath, running); err != nil {
		t.Fatal(err)
	}
	d.write("stdout", "two\n")
	eventually(t, "both lines", func() bool { return countLines(t, criPath) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if panicked != 3 {
		t.Errorf("%d panics injected, want 3", panicked)
	}
}
