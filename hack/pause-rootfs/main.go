// Command pause-rootfs writes Berth's pause program as a root filesystem
// tar stream to standard output, for `docker import` to make the same pause
// image Berth makes (hack/setup-containerd.sh uses it when Docker does not
// have Berth's pause image yet).
package main

import (
	"fmt"
	"os"

	"github.com/berth-cri/berth/internal/pause"
)

func main() {
	data, err := pause.RootFS()
	if err == nil {
		_, err = os.Stdout.Write(data)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pause-rootfs:", err)
		os.Exit(1)
	}
}
