// Package kubelet is Berth's kubelet suite: a real kubelet in standalone
// mode runs static pods on a Berth started by the test, and the checks go
// through kubelet's own HTTP endpoints (make test-kubelet; docs/kubelet.md).
package kubelet
