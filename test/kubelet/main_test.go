package kubelet

import (
	"fmt"
	"os"
	"testing"

	"github.com/berth-cri/berth/test/framework"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := framework.Cleanup(); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet: cleaning up: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
