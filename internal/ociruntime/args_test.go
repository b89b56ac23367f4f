package ociruntime

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseInvocation(t *testing.T) {
	for _, tc := range []struct {
		args string
		want invocation
	}{
		{"--root /r --log /l/log.json --log-format json create --bundle /b --pid-file /b/init.pid id1",
			invocation{root: "/r", log: "/l/log.json", logFormat: "json", command: "create", bundle: "/b", id: "id1"}},
		{"--root=/r --systemd-cgroup create -b /b --console-socket /s id2",
			invocation{root: "/r", logFormat: "text", command: "create", bundle: "/b", id: "id2"}},
		{"create --bundle=/b id3", invocation{root: "/run/runc", logFormat: "text", command: "create", bundle: "/b", id: "id3"}},
		{"--root /r delete --force id4", invocation{root: "/r", logFormat: "text", command: "delete", id: "id4", force: true}},
		{"features", invocation{root: "/run/runc", logFormat: "text", command: "features"}},
		{"--version", invocation{root: "/run/runc", logFormat: "text"}},
		{"", invocation{root: "/run/runc", logFormat: "text"}},
	} {
		t.Run(tc.args, func(t *testing.T) {
			if got := parseInvocation(strings.Fields(tc.args)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
