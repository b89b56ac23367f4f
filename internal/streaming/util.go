package streaming

import (
	"errors"
	"strings"
	"sync"

	utilexec "k8s.io/utils/exec"
)

// headBuffer keeps the first max bytes written to it and accepts the rest.
type headBuffer struct {
	mu  sync.Mutex // guards buf
	max int
	buf []byte
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (h *headBuffer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return string(h.buf)
}

// trimMessage tidies Docker's start-failure message ("OCI runtime exec
// failed: exec failed: …\r\n").
func trimMessage(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
}

// isNotFound reports whether a start-failure message says the executable
// does not exist (runc: "executable file not found in $PATH", "no such file
// or directory").
func isNotFound(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "not found") || strings.Contains(m, "no such file or directory")
}

// exitError is what cri-streaming needs to report an exit code: a value
// implementing k8s.io/utils/exec.ExitError (it type-asserts, not errors.As).
func exitError(code int, msg string) error {
	return utilexec.CodeExitError{Err: errors.New(msg), Code: code}
}
