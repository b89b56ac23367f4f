package config

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func parse(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	c := Default()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestDefaultsAreValid(t *testing.T) {
	if _, err := parse(t); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestCriDockerdFlagsAreAccepted(t *testing.T) {
	// A cri-dockerd unit file's flags, as operators have them.
	c, err := parse(t,
		"--container-runtime-endpoint=fd://",
		"--docker-endpoint=unix:///var/run/docker.sock",
		"--pod-infra-container-image=registry.k8s.io/pause:3.9",
		"--network-plugin=cni",
		"--cni-bin-dir=/opt/cni/bin",
		"--cni-conf-dir=/etc/cni/net.d",
		"--cni-cache-dir=/var/lib/cni/cache",
		"--network-plugin-mtu=1450",
		"--runtime-request-timeout=3m",
		"--image-pull-progress-deadline=5m",
		"--streaming-bind-addr=127.0.0.1:10010",
		"--log-level=warning",
		"--cri-dockerd-root-directory=/var/lib/dockershim",
		"--hairpin-mode=hairpin-veth",
		"--ipv6-dual-stack",
		"--pod-cidr=10.244.0.0/24",
		"--runtime-cgroups=/system.slice/cri-docker.service",
	)
	if err != nil {
		t.Fatal(err)
	}
	if c.RootDir != "/var/lib/dockershim" || c.RuntimeRequestTimeout != 3*time.Minute ||
		c.PodInfraContainerImage != "registry.k8s.io/pause:3.9" || c.NetworkPluginMTU != 1450 ||
		len(c.CNIBinDirs) != 1 || c.StreamingBindAddr != "127.0.0.1:10010" {
		t.Errorf("flags not applied: %+v", c)
	}
}

func TestInvalidValuesNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--container-runtime-endpoint=/run/x.sock"}, "--container-runtime-endpoint"},
		{[]string{"--container-runtime-endpoint=unix://relative.sock"}, "--container-runtime-endpoint"},
		{[]string{"--container-runtime-endpoint=npipe:////./pipe/x"}, "--container-runtime-endpoint"},
		{[]string{"--docker-endpoint=docker.sock"}, "--docker-endpoint"},
		{[]string{"--docker-endpoint=ssh://host"}, "--docker-endpoint"},
		{[]string{"--root-dir=relative"}, "--root-dir"},
		{[]string{"--pod-infra-container-image="}, "--pod-infra-container-image"},
		{[]string{"--pod-infra-container-image=Pause:Bad Ref"}, "--pod-infra-container-image"},
		{[]string{"--pinned-images=busybox,not a ref"}, "--pinned-images"},
		{[]string{"--network-plugin=kubenet"}, "--network-plugin"},
		{[]string{"--cni-bin-dir="}, "--cni-bin-dir"},
		{[]string{"--network-plugin-mtu=-1"}, "--network-plugin-mtu"},
		{[]string{"--pod-cidr=10.0.0.0"}, "--pod-cidr"},
		{[]string{"--runtime-request-timeout=0s"}, "--runtime-request-timeout"},
		{[]string{"--image-pull-progress-deadline=-1s"}, "--image-pull-progress-deadline"},
		{[]string{"--streaming-bind-addr=example:http"}, "--streaming-bind-addr"},
		{[]string{"--streaming-tls-cert-file=/x.pem"}, "--streaming-tls-cert-file"},
		{[]string{"--metrics-address=9090"}, "--metrics-address"},
		{[]string{"--log-level=verbose"}, "--log-level"},
		{[]string{"--log-format=xml"}, "--log-format"},
		{[]string{"--oom-score-adj-policy=never"}, "--oom-score-adj-policy"},
		{[]string{"--hairpin-mode=always"}, "--hairpin-mode"},
		{[]string{"--runtime-cgroups=berth-runtime"}, "--runtime-cgroups"},
		{[]string{"--runtime-cgroups=/"}, "--runtime-cgroups"},
		{[]string{"--runtime-cgroups=/a/../b"}, "--runtime-cgroups"},
		{[]string{"--socket-group=no-such-group-berth"}, "--socket-group"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parse(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("error = %v, want one naming %s", err, tc.flag)
			}
		})
	}
}

// TestIgnoredFlags: the compatibility flags with no effect are named
// exactly when they are set to something other than their default, with
// what decides instead.
func TestIgnoredFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, nil},
		{[]string{"--hairpin-mode=hairpin-veth", "--ipv6-dual-stack=false"}, nil},
		{[]string{"--hairpin-mode=promiscuous-bridge"}, []string{"--hairpin-mode=promiscuous-bridge"}},
		{[]string{"--hairpin-mode=none", "--ipv6-dual-stack"}, []string{"--hairpin-mode=none", "--ipv6-dual-stack=true"}},
		// --runtime-cgroups has an effect.
		{[]string{"--runtime-cgroups=/berth-runtime"}, nil},
	} {
		c, err := parse(t, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range c.IgnoredFlags() {
			got = append(got, f.Flag)
			if f.Why == "" || f.Where == "" {
				t.Errorf("%s: no reason or no place to set it instead: %+v", f.Flag, f)
			}
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("IgnoredFlags(%v) = %v, want %v", tc.args, got, tc.want)
		}
	}
	c, _ := parse(t, "--hairpin-mode=none", "--ipv6-dual-stack")
	if f := c.IgnoredFlags(); !strings.Contains(f[0].Where, "hairpinMode") || !strings.Contains(f[1].Where, "range") {
		t.Errorf("what decides instead: %+v", f)
	}
}

func TestUnknownFlagIsAnError(t *testing.T) {
	if _, err := parse(t, "--dockershim-root"); err == nil {
		t.Error("unknown flag accepted")
	}
}

func TestStreamingAddr(t *testing.T) {
	for in, want := range map[string]string{
		"":                "127.0.0.1:0",
		"127.0.0.1":       "127.0.0.1:0",
		"0.0.0.0:10010":   "0.0.0.0:10010",
		"::1":             "[::1]:0",
		"[::1]:5":         "[::1]:5",
		"localhost:10010": "localhost:10010",
	} {
		got, err := StreamingAddr(in)
		if err != nil || got != want {
			t.Errorf("StreamingAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
