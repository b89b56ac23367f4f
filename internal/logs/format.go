package logs

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// The CRI log format, as containerd and CRI-O write it and kubelet and crictl
// parse it: one line per log entry,
//
//	<RFC3339Nano timestamp> <stream> <tag> <content>\n
//
// where tag is "F" for a full line and "P" for a part of a line that
// continues in the next entry of the same stream.
const (
	tagFull    = 'F'
	tagPartial = 'P'
)

// entry is one line of Docker's json-file log driver:
//
//	{"log":"hello\n","stream":"stdout","attrs":{...},"time":"2026-01-02T15:04:05.123456789Z"}
//
// Docker writes each chunk it read from the container's stdout or stderr as
// one entry; a chunk ends at a newline or after 16 KiB, and only a chunk that
// ended at a newline has "\n" at the end of its log.
type entry struct {
	Log    string `json:"log"`
	Stream string `json:"stream"`
	Time   string `json:"time"`
}

var errBadEntry = errors.New("not a Docker json-file log entry")

// decodeEntry parses one Docker json-file line (without its trailing "\n").
func decodeEntry(line []byte, e *entry) error {
	*e = entry{}
	if err := json.Unmarshal(line, e); err != nil {
		return errBadEntry
	}
	if e.Time == "" {
		return errBadEntry
	}
	return nil
}

// zeroTime is the timestamp written for an entry whose own cannot be parsed,
// so the CRI line stays parseable.
const zeroTime = "0001-01-01T00:00:00Z"

// appendCRI appends the CRI rendering of e to dst and returns it. The
// rendering is a pure function of the entry: Berth relies on that to
// recognise, after a crash, the lines it already wrote (see reconcile.go).
//
//   - The timestamp is Docker's, verbatim when it is valid RFC 3339.
//   - The stream is "stdout" or "stderr"; anything else (a TTY container has
//     only one stream, which Docker calls stdout) is written as stdout.
//   - A log ending in "\n" is a full line (F) without that newline; one
//     without is partial (P), and the reader joins it with what follows.
//     "\r" is kept as the container wrote it (a TTY writes "\r\n").
//   - Docker never puts a newline inside an entry, but should one be there,
//     each newline ends a full line of its own, so a CRI line never spans two
//     lines of the file.
//   - An empty log renders as nothing.
func appendCRI(dst []byte, e *entry) []byte {
	ts := e.Time
	if !validTime(ts) {
		ts = zeroTime
	}
	stream := "stdout"
	if e.Stream == "stderr" {
		stream = "stderr"
	}
	rest := e.Log
	for len(rest) > 0 {
		tag := byte(tagPartial)
		content := rest
		rest = ""
		if i := indexNewline(content); i >= 0 {
			tag = tagFull
			content, rest = content[:i], content[i+1:]
		}
		dst = append(dst, ts...)
		dst = append(dst, ' ')
		dst = append(dst, stream...)
		dst = append(dst, ' ', tag, ' ')
		dst = append(dst, content...)
		dst = append(dst, '\n')
	}
	return dst
}

func indexNewline(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return i
		}
	}
	return -1
}

// validTime reports whether s is an RFC 3339 timestamp kubelet can parse and
// contains nothing that would break the CRI line.
func validTime(s string) bool {
	if len(s) < len("2006-01-02T15:04:05Z") || strings.ContainsAny(s, " \n") {
		return false
	}
	_, err := time.Parse(time.RFC3339Nano, s)
	return err == nil
}
