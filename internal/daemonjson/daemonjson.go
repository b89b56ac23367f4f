// Package daemonjson adds Berth's OCI runtime wrapper to Docker's
// daemon.json and takes it out again, keeping every other setting the
// operator wrote (unknown keys, other runtimes, their order).
package daemonjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/berth-cri/berth/internal/idmap"
	"github.com/berth-cri/berth/internal/safefile"
)

// DefaultPath is where Docker reads its configuration file.
const DefaultPath = "/etc/docker/daemon.json"

// ErrInvalid is wrapped when daemon.json is not a JSON object (or its
// "runtimes" is not one): the file is then left as it is.
var ErrInvalid = errors.New("not a valid daemon.json")

// Runtime is one entry of daemon.json's "runtimes".
type Runtime struct {
	Path        string   `json:"path"`
	RuntimeArgs []string `json:"runtimeArgs,omitempty"`
}

// Wrapper is the berth-userns entry running berth oci-runtime with runc.
func Wrapper(berth, runc string) Runtime {
	args := []string{"oci-runtime"}
	if runc != "" {
		args = append(args, "--runc", runc)
	}
	return Runtime{Path: berth, RuntimeArgs: args}
}

// member is one key of a JSON object, its value kept as written.
type member struct {
	key   string
	value json.RawMessage
}

// object is a JSON object whose members keep their order.
type object []member

func parseObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	var o object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o = append(o, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("data after the closing brace")
	}
	return o, nil
}

func (o object) get(key string) (json.RawMessage, bool) {
	for _, m := range o {
		if m.key == key {
			return m.value, true
		}
	}
	return nil, false
}

func (o object) set(key string, v json.RawMessage) object {
	for i := range o {
		if o[i].key == key {
			o[i].value = v
			return o
		}
	}
	return append(o, member{key, v})
}

func (o object) del(key string) object {
	out := o[:0]
	for _, m := range o {
		if m.key != key {
			out = append(out, m)
		}
	}
	return out
}

func (o object) marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// parse reads daemon.json's top level and its runtimes; empty data is an
// empty configuration.
func parse(data []byte) (top, runtimes object, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, nil
	}
	if top, err = parseObject(data); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if raw, ok := top.get("runtimes"); ok && string(raw) != "null" {
		if runtimes, err = parseObject(raw); err != nil {
			return nil, nil, fmt.Errorf("%w: \"runtimes\": %w", ErrInvalid, err)
		}
	}
	return top, runtimes, nil
}

// Register returns data with the berth-userns runtime set to rt, and
// whether that changed anything.
func Register(data []byte, rt Runtime) ([]byte, bool, error) {
	top, runtimes, err := parse(data)
	if err != nil {
		return nil, false, err
	}
	want, err := json.Marshal(rt)
	if err != nil {
		return nil, false, err
	}
	if cur, ok := runtimes.get(idmap.RuntimeName); ok {
		var c bytes.Buffer
		if json.Compact(&c, cur) == nil && bytes.Equal(c.Bytes(), want) {
			return data, false, nil
		}
	}
	return withRuntimes(top, runtimes.set(idmap.RuntimeName, want))
}

// Unregister returns data without the berth-userns runtime, and whether
// that changed anything.
func Unregister(data []byte) ([]byte, bool, error) {
	top, runtimes, err := parse(data)
	if err != nil {
		return nil, false, err
	}
	if _, ok := runtimes.get(idmap.RuntimeName); !ok {
		return data, false, nil
	}
	// NOTE: "runtimes" stays, empty if berth-userns was its only entry:
	// dockerd's SIGHUP reload ignores runtimes when the key is absent
	// (measured on Docker 20.10: the runtime stayed listed).
	return withRuntimes(top, runtimes.del(idmap.RuntimeName))
}

// withRuntimes returns top with its "runtimes" replaced, as written out,
// and true (it changed).
func withRuntimes(top, runtimes object) ([]byte, bool, error) {
	rb, err := runtimes.marshal()
	if err != nil {
		return nil, false, err
	}
	out, err := top.set("runtimes", bytes.TrimSpace(rb)).marshal()
	return out, err == nil, err
}

// Edit applies fn to the file at path and writes the result atomically
// (a temporary file renamed over it, synced) if it changed, keeping the
// file's mode; a missing file reads as empty and is created 0644. A file
// fn refuses is left untouched.
func Edit(path string, fn func([]byte) ([]byte, bool, error)) (bool, error) {
	data, err := os.ReadFile(path)
	mode := fs.FileMode(0o644)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data = nil
	case err != nil:
		return false, err
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	out, changed, err := fn(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w (left unchanged)", path, err)
	}
	if !changed {
		return false, nil
	}
	if err := safefile.Write(path, out, true); err != nil {
		return false, err
	}
	return true, os.Chmod(path, mode)
}
