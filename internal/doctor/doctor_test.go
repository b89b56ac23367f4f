package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/docker"
)

func TestMountsSocket(t *testing.T) {
	socks := []string{"/var/run/docker.sock", "/run/docker.sock"}
	for src, want := range map[string]bool{
		"/var/run/docker.sock": true,
		"/run/docker.sock/":    true,
		"/var/run":             true,
		"/run":                 true,
		"/":                    false,
		"/var/lib/docker":      false,
		"/run/docker.sock.bak": false,
	} {
		if got := mountsSocket(src, socks); got != want {
			t.Errorf("mountsSocket(%q) = %v", src, got)
		}
	}
}

func TestReportOutput(t *testing.T) {
	r := Report{Findings: []Finding{
		pass("docker", "Docker 20.10"),
		fail("cni", "no configuration", "install one"),
	}, Worst: Fail}
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Worst != Fail || back.Findings[1].Status != Fail {
		t.Errorf("JSON round trip: %+v, %v\n%s", back, err, b.String())
	}
	if !strings.Contains(b.String(), `"status": "fail"`) {
		t.Errorf("status not written by name:\n%s", b.String())
	}
	b.Reset()
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "FAIL") || !strings.Contains(b.String(), "fix: install one") {
		t.Errorf("table:\n%s", b.String())
	}
	if Pass.ExitCode() != 0 || Warn.ExitCode() != 1 || Fail.ExitCode() != 2 {
		t.Error("exit codes")
	}
}

func TestCheckUserNamespaces(t *testing.T) {
	wrapper := docker.DaemonInfo{NegotiatedAPIVersion: "1.56", Runtimes: []string{"berth-userns"}}
	for _, tc := range []struct {
		name   string
		daemon docker.DaemonInfo
		status Status
		detail string
	}{
		{"wrapper", wrapper, Pass, "run in user namespaces of their own"},
		{"none", docker.DaemonInfo{NegotiatedAPIVersion: "1.56", UsernsWrapper: "Docker has no runtime named berth-userns"}, Pass, "are refused (optional feature): Docker has no runtime named berth-userns"},
		{"broken wrapper", docker.DaemonInfo{NegotiatedAPIVersion: "1.56", Runtimes: []string{"berth-userns"}, UsernsWrapper: "not Berth's"}, Warn, "cannot run: not Berth's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := checkUserNamespaces(context.Background(), &env{health: docker.Health{Ready: true, Daemon: tc.daemon}})
			if len(f) != 1 || f[0].Status != tc.status || !strings.Contains(f[0].Detail, tc.detail) {
				t.Errorf("findings = %+v", f)
			}
		})
	}
}

// TestCompatFlags: a cri-dockerd flag Berth ignores is a warning naming
// what decides instead; the defaults pass.
func TestCompatFlags(t *testing.T) {
	cfg := config.Default()
	got := checkCompatFlags(context.Background(), &env{opts: Options{Config: cfg}})
	if len(got) != 1 || got[0].Status != Pass || got[0].Check != "compat-flags" {
		t.Errorf("defaults: %+v", got)
	}
	cfg.HairpinMode = "promiscuous-bridge"
	cfg.IPv6DualStack = true
	cfg.RuntimeCgroups = "/berth-runtime" // has an effect: not reported
	got = checkCompatFlags(context.Background(), &env{opts: Options{Config: cfg}})
	if len(got) != 2 {
		t.Fatalf("findings = %+v, want one per ignored flag", got)
	}
	for i, want := range []struct{ flag, instead string }{
		{"--hairpin-mode=promiscuous-bridge", "hairpinMode"},
		{"--ipv6-dual-stack=true", "IPAM"},
	} {
		f := got[i]
		if f.Status != Warn || !strings.Contains(f.Detail, want.flag) || !strings.Contains(f.Detail, "no effect") || !strings.Contains(f.Fix, want.instead) {
			t.Errorf("finding %d = %+v, want a warning about %s naming %s", i, f, want.flag, want.instead)
		}
	}
}
