package checkpoint

import (
	"encoding/json"
	"testing"
)

// TestNetworkRecordFormat pins the JSON of a sandbox record's network:
// the record outlives Berth's versions, so its fields' names and order
// change only with the record's version.
func TestNetworkRecordFormat(t *testing.T) {
	n := &Network{State: StateUp}
	n.ConfList = json.RawMessage(`{"name":"n"}`)
	n.NetNS = "/proc/1/ns/net"
	n.IfName = "eth0"
	n.CapabilityArgs = map[string]any{"portMappings": []any{}}
	n.Args = [][2]string{{"K8S_POD_NAME", "p"}}
	n.Result = json.RawMessage(`{"cniVersion":"1.0.0"}`)
	n.IPs = []string{"10.0.0.2"}
	n.Loopback = true
	got, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"state":"up","confList":{"name":"n"},"netns":"/proc/1/ns/net","ifName":"eth0",` +
		`"capabilityArgs":{"portMappings":[]},"args":[["K8S_POD_NAME","p"]],"result":{"cniVersion":"1.0.0"},` +
		`"ips":["10.0.0.2"],"loopback":true}`
	if string(got) != want {
		t.Errorf("a network record is\n%s\nwant\n%s", got, want)
	}
	empty, _ := json.Marshal(&Network{State: StateDown})
	if string(empty) != `{"state":"down","confList":null,"netns":"","ifName":""}` {
		t.Errorf("an empty network record is %s", empty)
	}
}
