package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"
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
// ended at a newline has "\n" at the end of its log. The slices are valid
// until the decoder's next call.
type entry struct {
	Log    []byte
	Stream []byte
	Time   []byte // a valid RFC 3339 timestamp (see decoder.decode)
}

var errBadEntry = errors.New("not a Docker json-file log entry")

// zeroTime is the timestamp written for an entry whose own cannot be parsed,
// so the CRI line stays parseable.
const zeroTime = "0001-01-01T00:00:00Z"

// decoder parses Docker's json-file lines. Most lines take a fast path for
// the exact shape Docker writes; anything else goes through encoding/json.
type decoder struct {
	buf []byte // the decoded log of the last entry
	// lastSec is the date and time to the second of the last timestamp
	// found valid: timestamps of one second differ only in the fraction.
	lastSec [19]byte
	secOK   bool
}

// decode parses one json-file line (without its "\n") into e.
func (d *decoder) decode(line []byte, e *entry) error {
	if !d.fast(line, e) {
		var j struct {
			Log    string `json:"log"`
			Stream string `json:"stream"`
			Time   string `json:"time"`
		}
		if err := json.Unmarshal(line, &j); err != nil || j.Time == "" {
			return errBadEntry
		}
		d.buf = append(d.buf[:0], j.Log...)
		e.Log, e.Stream, e.Time = d.buf, []byte(j.Stream), []byte(j.Time)
	}
	if !d.validTime(e.Time) {
		e.Time = []byte(zeroTime)
	}
	return nil
}

// fast parses exactly {"log":"…","stream":"…","time":"…"}, the shape
// Docker writes when no log attributes are configured. It reports false for
// anything else, including what it could parse but encoding/json might
// parse differently (surrogate escapes, invalid UTF-8, control bytes).
func (d *decoder) fast(line []byte, e *entry) bool {
	rest, ok := bytes.CutPrefix(line, []byte(`{"log":"`))
	if !ok {
		return false
	}
	n, ok := d.unquote(rest)
	if !ok {
		return false
	}
	if rest, ok = bytes.CutPrefix(rest[n:], []byte(`,"stream":"`)); !ok {
		return false
	}
	stream, rest, ok := plainString(rest)
	if !ok {
		return false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"time":"`)); !ok {
		return false
	}
	ts, rest, ok := plainString(rest)
	if !ok || len(ts) == 0 || string(rest) != "}" {
		return false
	}
	e.Log, e.Stream, e.Time = d.buf, stream, ts
	return true
}

// plainString returns the JSON string at the start of s (after its opening
// quote) if it has no escapes and only printable ASCII.
func plainString(s []byte) (str, rest []byte, ok bool) {
	for i, c := range s {
		switch {
		case c == '"':
			return s[:i], s[i+1:], true
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// unquote decodes the JSON string at the start of s (after its opening
// quote) into d.buf and returns how many bytes of s it took, closing quote
// included.
func (d *decoder) unquote(s []byte) (int, bool) {
	d.buf = d.buf[:0]
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(s) {
				return 0, false
			}
			switch s[i+1] {
			case '"', '\\', '/':
				d.buf = append(d.buf, s[i+1])
			case 'n':
				d.buf = append(d.buf, '\n')
			case 'r':
				d.buf = append(d.buf, '\r')
			case 't':
				d.buf = append(d.buf, '\t')
			case 'b':
				d.buf = append(d.buf, '\b')
			case 'f':
				d.buf = append(d.buf, '\f')
			case 'u':
				r, ok := hex4(s[i+2:])
				if !ok || (r >= 0xd800 && r < 0xe000) {
					return 0, false // surrogates: leave them to encoding/json
				}
				d.buf = utf8.AppendRune(d.buf, r)
				i += 6
				continue
			default:
				return 0, false
			}
			i += 2
		case c < 0x20:
			return 0, false
		case c < utf8.RuneSelf:
			// A run of plain ASCII at once.
			j := i + 1
			for j < len(s) && s[j] >= 0x20 && s[j] < utf8.RuneSelf && s[j] != '"' && s[j] != '\\' {
				j++
			}
			d.buf = append(d.buf, s[i:j]...)
			i = j
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false
			}
			d.buf = append(d.buf, s[i:i+size]...)
			i += size
		}
	}
	return 0, false
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// validTime reports whether ts is an RFC 3339 timestamp kubelet can parse
// and contains nothing that would break the CRI line. Docker's
// (2006-01-02T15:04:05.999999999Z) within an already validated second are
// recognised without parsing.
func (d *decoder) validTime(ts []byte) bool {
	if len(ts) >= 20 && ts[len(ts)-1] == 'Z' && fraction(ts[19:len(ts)-1]) {
		if d.secOK && bytes.Equal(ts[:19], d.lastSec[:]) {
			return true
		}
		if _, err := time.Parse(time.RFC3339Nano, string(ts)); err != nil {
			return false
		}
		copy(d.lastSec[:], ts[:19])
		d.secOK = true
		return true
	}
	if len(ts) < len("2006-01-02T15:04:05Z") || bytes.ContainsAny(ts, " \n") {
		return false
	}
	_, err := time.Parse(time.RFC3339Nano, string(ts))
	return err == nil
}

// fraction reports whether s is empty or "." and one to nine digits.
func fraction(s []byte) bool {
	if len(s) == 0 {
		return true
	}
	if s[0] != '.' || len(s) < 2 || len(s) > 10 {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendCRI appends the CRI rendering of e to dst and returns it. The
// rendering is a pure function of the entry: Berth relies on that to
// recognise, after a crash, the lines it already wrote (see reconcile.go).
//
//   - The timestamp is Docker's, verbatim (decode replaced an invalid one).
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
	stream := "stdout"
	if string(e.Stream) == "stderr" {
		stream = "stderr"
	}
	rest := e.Log
	for len(rest) > 0 {
		tag := byte(tagPartial)
		content := rest
		rest = nil
		if i := bytes.IndexByte(content, '\n'); i >= 0 {
			tag = tagFull
			content, rest = content[:i], content[i+1:]
		}
		dst = append(dst, e.Time...)
		dst = append(dst, ' ')
		dst = append(dst, stream...)
		dst = append(dst, ' ', tag, ' ')
		dst = append(dst, content...)
		dst = append(dst, '\n')
	}
	return dst
}
