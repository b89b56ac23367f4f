package pause

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestProgramIsAValidStaticELF(t *testing.T) {
	prog, err := Program("amd64")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(prog))
	if err != nil {
		t.Fatalf("not an ELF: %v", err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || len(f.Progs) != 1 {
		t.Errorf("machine %v type %v progs %d", f.Machine, f.Type, len(f.Progs))
	}
	if len(prog) > 512 {
		t.Errorf("pause program is %d bytes; it should stay tiny", len(prog))
	}
	if _, err := Program("s390x"); err == nil {
		t.Error("an unsupported architecture was accepted")
	}
}

// TestProgramExitsOnSignals runs the program on this machine (amd64) and
// checks it sleeps, then exits 0 on SIGTERM and on SIGINT.
func TestProgramExitsOnSignals(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Fatalf("this test runs the amd64 program natively; GOARCH is %s", runtime.GOARCH)
	}
	prog, _ := Program("amd64")
	path := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("pause exited without a signal: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		_ = cmd.Process.Signal(sig)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("after %v: %v, want exit 0", sig, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("pause ignored %v", sig)
		}
	}
}
