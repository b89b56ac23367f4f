package streaming

import (
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/docker"
)

func TestExecResult(t *testing.T) {
	const notFound = "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH: unknown\r\n"
	const denied = "OCI runtime exec failed: exec failed: unable to start container process: exec: \"/etc/passwd\": permission denied: unknown\r\n"
	for _, tc := range []struct {
		name     string
		st       docker.ExecState
		output   string
		want     int
		startErr bool
	}{
		{name: "success", st: docker.ExecState{Pid: 10}, want: 0},
		{name: "exit code", st: docker.ExecState{Pid: 10, ExitCode: 3}, want: 3},
		{name: "a command exiting 126 itself", st: docker.ExecState{Pid: 10, ExitCode: 126}, output: "x", want: 126},
		{name: "missing, Docker 20.10", st: docker.ExecState{ExitCode: 126}, output: notFound, want: 127, startErr: true},
		{name: "missing, current Docker", st: docker.ExecState{ExitCode: 127}, output: notFound, want: 127, startErr: true},
		{name: "not executable", st: docker.ExecState{ExitCode: 126}, output: denied, want: 126, startErr: true},
		{name: "no message", st: docker.ExecState{ExitCode: 126}, want: 126, startErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := execResult(tc.st, tc.output)
			if got.ExitCode != tc.want || (got.StartError != "") != tc.startErr {
				t.Fatalf("execResult = %+v, want exit code %d, start error %v", got, tc.want, tc.startErr)
			}
			if tc.startErr && tc.output != "" && got.StartError != trimMessage(tc.output) {
				t.Fatalf("start error %q", got.StartError)
			}
		})
	}
}

func TestPendingTokens(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPending()
	p.now = func() time.Time { return now }
	req := &runtimeapi.ExecRequest{ContainerId: "c"}
	if err := p.put("exec", "http://127.0.0.1:1/exec/tok1", req); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.take("attach", "tok1"); ok {
		t.Fatal("an exec token was taken as an attach token")
	}
	if got, ok := p.take("exec", "tok1"); !ok || got != req {
		t.Fatalf("take = %v, %v", got, ok)
	}
	if _, ok := p.take("exec", "tok1"); ok {
		t.Fatal("a token was taken twice")
	}

	if err := p.put("exec", "http://127.0.0.1:1/exec/tok2", req); err != nil {
		t.Fatal(err)
	}
	now = now.Add(tokenTTL + time.Second)
	if _, ok := p.take("exec", "tok2"); ok {
		t.Fatal("an expired token was taken")
	}

	for i := 0; i < maxPending; i++ {
		if err := p.put("exec", "http://h/exec/t"+string(rune('a'+i%26))+time.Duration(i).String(), req); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if err := p.put("exec", "http://h/exec/onemore", req); err == nil {
		t.Fatal("more than maxPending tokens were accepted")
	}
	now = now.Add(tokenTTL + time.Second)
	if err := p.put("exec", "http://h/exec/afterexpiry", req); err != nil {
		t.Fatalf("expired tokens were not pruned: %v", err)
	}
}

func TestWriteStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{name: "success", want: `{"status":"Success"}`},
		{name: "exit code", err: exitError(7, "command exited with code 7"),
			want: `{"status":"Failure","message":"command terminated with non-zero exit code: command exited with code 7","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}`},
		{name: "error", err: errors.New("boom"),
			want: `{"status":"Failure","message":"Internal error occurred: error executing command in container: boom","reason":"InternalError","code":500}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf jsonBuffer
			if err := writeStatus(&buf, tc.err); err != nil {
				t.Fatal(err)
			}
			if string(buf) != tc.want {
				t.Fatalf("wrote %s\nwant  %s", buf, tc.want)
			}
			if !json.Valid(buf) {
				t.Fatal("not JSON")
			}
		})
	}
}

type jsonBuffer []byte

func (b *jsonBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

func TestURLHost(t *testing.T) {
	for _, tc := range []struct {
		addr *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10}, "127.0.0.1:10"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 10}, "127.0.0.1:10"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 10}, "[::1]:10"},
		{&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 10}, "10.1.2.3:10"},
		{&net.TCPAddr{IP: net.ParseIP("fd00::1"), Port: 10}, "[fd00::1]:10"},
	} {
		if got := urlHost(tc.addr); got != tc.want {
			t.Errorf("urlHost(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestHeadBuffer(t *testing.T) {
	h := &headBuffer{max: 5}
	for _, s := range []string{"abc", "defgh", "ij"} {
		if n, err := h.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if h.String() != "abcde" {
		t.Fatalf("kept %q", h.String())
	}
}
