package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/framework"
)

// criLine is one line of the CRI log format.
var criLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z) (stdout|stderr) ([PF]) (.*)$`)

type logLine struct{ stream, tag, text string }

// readCRILog parses a CRI log file (and its rotated siblings, oldest
// first, when rotated is given), failing on any malformed line.
func readCRILog(t *testing.T, paths ...string) []logLine {
	t.Helper()
	var out []logLine
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if l == "" {
				continue
			}
			m := criLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("%s: not a CRI log line: %q", p, l)
			}
			out = append(out, logLine{m[2], m[3], m[4]})
		}
	}
	return out
}

func TestContainerLogsInCRIFormat(t *testing.T) {
	t.Parallel()
	p := newPod(t, berth, "logs")
	long := strings.Repeat("x", 40000)
	id := p.run(t, containerConfig("writer", `echo out-1; echo err-1 >&2; printf '`+long+`\n'; printf 'no newline at the end'`))
	waitExited(t, berth, id)
	path := containerStatus(t, berth, id).LogPath
	var lines []logLine
	eventually(t, 20*time.Second, func() error {
		if _, err := os.Stat(path); err != nil {
			return err
		}
		lines = readCRILog(t, path)
		if len(lines) < 4 {
			return fmt.Errorf("%d lines so far", len(lines))
		}
		return nil
	})
	// stdout and stderr are separate streams: their relative order is not
	// kept, each one's is.
	var stdout []logLine
	for _, l := range lines {
		if l.stream == "stderr" {
			if l != (logLine{"stderr", "F", "err-1"}) {
				t.Errorf("stderr line %q %q", l.tag, l.text)
			}
			continue
		}
		stdout = append(stdout, l)
	}
	if len(stdout) < 3 || stdout[0] != (logLine{"stdout", "F", "out-1"}) {
		t.Fatalf("%d stdout lines; first %q %q", len(stdout), stdout[0].tag, stdout[0].text)
	}
	// The 40000-byte line arrives as partial lines joined by a full one.
	var joined strings.Builder
	i := 1
	for ; i < len(stdout) && stdout[i].tag == "P" && strings.HasPrefix(stdout[i].text, "x"); i++ {
		joined.WriteString(stdout[i].text)
	}
	if i >= len(stdout) || stdout[i].tag != "F" {
		t.Fatalf("long line not ended by an F line")
	}
	joined.WriteString(stdout[i].text)
	if joined.String() != long || i == 1 {
		t.Errorf("long line: %d bytes in %d parts, want %d bytes in several", joined.Len(), i, len(long))
	}
	if last := stdout[len(stdout)-1]; last != (logLine{"stdout", "P", "no newline at the end"}) {
		t.Errorf("last line %q %q, want a partial line", last.tag, last.text)
	}
	// docker logs still works.
	if out, _ := docker(t, "logs", id); !strings.Contains(out, "out-1") {
		t.Errorf("docker logs: %q", out)
	}
}

// TestLogRotationWithReopenContainerLog rotates a busy container's log the
// way kubelet does (rename, then ReopenContainerLog) many times and checks
// every line arrives exactly once, in order.
func TestLogRotationWithReopenContainerLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPod(t, berth, "rotate")
	const n = 3000
	id := p.run(t, containerConfig("counter", fmt.Sprintf("i=0; while [ $i -lt %d ]; do i=$((i+1)); echo line-$i; done; exec sleep 3600", n)))
	path := containerStatus(t, berth, id).LogPath
	var rotated []string
	for r := 0; r < 20; r++ {
		time.Sleep(30 * time.Millisecond)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		dst := fmt.Sprintf("%s.%d", path, r)
		if err := os.Rename(path, dst); err != nil {
			t.Fatal(err)
		}
		rotated = append(rotated, dst)
		if err := berth.Runtime.ReopenContainerLog(ctx, id); err != nil {
			t.Fatalf("ReopenContainerLog: %v", err)
		}
	}
	var lines []logLine
	eventually(t, 30*time.Second, func() error {
		lines = readCRILog(t, append(append([]string{}, rotated...), path)...)
		if len(lines) < n {
			return fmt.Errorf("%d of %d lines", len(lines), n)
		}
		return nil
	})
	if len(lines) != n {
		t.Fatalf("%d lines, want %d (duplicates?)", len(lines), n)
	}
	for i, l := range lines {
		if l.text != "line-"+strconv.Itoa(i+1) {
			t.Fatalf("line %d is %q: lost or reordered", i+1, l.text)
		}
	}
	// ReopenContainerLog of a stopped container is refused.
	if err := berth.Runtime.StopContainer(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	_, err := berth.RuntimeClient.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	wantCode(t, err, codes.FailedPrecondition, "not running")
}

// TestLogsSurviveBerthCrash kills Berth while a container writes and checks
// the lines written meanwhile arrive once after the restart.
func TestLogsSurviveBerthCrash(t *testing.T) {
	t.Parallel()
	b, _ := privateBerth(t, framework.CNIOptions{})
	p := newPod(t, b, "logcrash")
	const n = 4000
	id := p.run(t, containerConfig("counter", fmt.Sprintf("i=0; while [ $i -lt %d ]; do i=$((i+1)); echo line-$i; [ $((i %% 500)) = 0 ] && sleep 0.2; done; exec sleep 3600", n)))
	path := containerStatus(t, b, id).LogPath
	time.Sleep(300 * time.Millisecond)
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the container keeps writing while Berth is down
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	var lines []logLine
	eventually(t, 30*time.Second, func() error {
		lines = readCRILog(t, path)
		if len(lines) < n {
			return fmt.Errorf("%d of %d lines", len(lines), n)
		}
		return nil
	})
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	for i, l := range lines {
		if l.text != "line-"+strconv.Itoa(i+1) {
			t.Fatalf("line %d is %q", i+1, l.text)
		}
	}
}
