package stats

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
)

var (
	devNamesMu sync.Mutex // guards devNames
	devNames   = map[[2]uint64]string{}
)

// BlockDeviceName names a block device by its numbers, as cAdvisor labels
// disk I/O ("/dev/vda"), from /sys/dev/block/<major>:<minor>/uevent. It
// returns "" if the device is unknown. Names are cached: device numbers
// are not reused while a device exists.
func BlockDeviceName(major, minor uint64) string {
	key := [2]uint64{major, minor}
	devNamesMu.Lock()
	name, ok := devNames[key]
	devNamesMu.Unlock()
	if ok {
		return name
	}
	data, err := os.ReadFile("/sys/dev/block/" + strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10) + "/uevent")
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("DEVNAME=")); ok {
				name = "/dev/" + string(v)
			}
		}
	}
	devNamesMu.Lock()
	devNames[key] = name
	devNamesMu.Unlock()
	return name
}
