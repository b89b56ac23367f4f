package framework

import (
	"os"
	"strconv"
	"time"
)

// timeoutScale is BERTH_TEST_TIMEOUT_SCALE, default 1: how many times longer
// than on an ordinary machine the suites wait for anything. A slow node sets
// it — the software-emulated virtual machine of `make test-cgroupv2`, where
// one Docker operation takes 10-20 s and starting a process is 70-100 times
// slower than on the host.
var timeoutScale = func() float64 {
	s, err := strconv.ParseFloat(os.Getenv("BERTH_TEST_TIMEOUT_SCALE"), 64)
	if err != nil || s < 1 {
		return 1
	}
	return s
}()

// Scaled returns d stretched by BERTH_TEST_TIMEOUT_SCALE. Every wait on a
// process, daemon or condition in the suites goes through it; a timeout
// that is the subject of a test (Berth's own deadlines) does not.
func Scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * timeoutScale)
}
