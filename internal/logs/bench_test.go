package logs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkForward measures how many log lines a second one container's
// forwarding sustains: Docker's json file holds b.N entries (about 100
// bytes of log each, as a typical application line); the time is from
// Follow until the last line is in the CRI file.
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("line=%dB", size), func(b *testing.B) { benchForward(b, size) })
	}
}

func benchForward(b *testing.B, size int) {
	root := b.TempDir()
	dir := filepath.Join(root, "containers", "bench")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	dockerPath := filepath.Join(dir, "bench-json.log")
	criPath := filepath.Join(root, "pods", "p", "c", "0.log")

	var docker, want []byte
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	pad := strings.Repeat("x", size-30)
	for i := 0; i < b.N; i++ {
		clock = clock.Add(time.Microsecond + 7)
		log, ts := fmt.Sprintf("level=info n=%08d msg=%s\n", i, pad), clock.Format(time.RFC3339Nano)
		line, _ := json.Marshal(map[string]string{"log": log, "stream": "stdout", "time": ts})
		e := entry{Log: []byte(log), Stream: []byte("stdout"), Time: []byte(ts)}
		docker = append(append(docker, line...), '\n')
		want = appendCRI(want, &e)
	}
	if err := os.WriteFile(dockerPath, docker, 0o640); err != nil {
		b.Fatal(err)
	}
	m, err := newManager(filepath.Join(root, "state"), nil, defaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()

	b.SetBytes(int64(len(docker) / b.N))
	b.ResetTimer()
	start := time.Now()
	if err := m.Follow("bench", dockerPath, criPath, running); err != nil {
		b.Fatal(err)
	}
	for {
		fi, err := os.Stat(criPath)
		if err == nil && fi.Size() >= int64(len(want)) {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "lines/s")
	if got, _ := os.ReadFile(criPath); !bytes.Equal(got, want) {
		b.Fatalf("the CRI log file differs from the expected rendering")
	}
}
