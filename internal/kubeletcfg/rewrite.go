package kubeletcfg

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// EnvEdit says how to rewrite an environment file of kubelet flags.
type EnvEdit struct {
	// Endpoint replaces every --container-runtime-endpoint.
	Endpoint string
	// DropDockershim removes the DockershimFlags.
	DropDockershim bool
	// AddTo, if no variable sets the endpoint, is the variable that gets
	// --container-runtime-endpoint (created if absent).
	AddTo string
}

// RewriteEnvFile applies e to the contents of an environment file, keeping
// every other line and flag as it was. It reports whether anything changed.
func RewriteEnvFile(data []byte, e EnvEdit) ([]byte, bool, error) {
	var out bytes.Buffer
	set, addedTo := false, false
	sc := bufio.NewScanner(bytes.NewReader(data))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, false, err
	}
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		name, value, ok := strings.Cut(trimmed, "=")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || !ok {
			lines[i] = line
			continue
		}
		name = strings.TrimSpace(name)
		args := SplitArgs(unquote(strings.TrimSpace(value)))
		newArgs := make([]string, 0, len(args)+1)
		for j := 0; j < len(args); j++ {
			a := args[j]
			flag, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !strings.HasPrefix(a, "-") {
				newArgs = append(newArgs, a)
				continue
			}
			takesNext := !hasValue && j+1 < len(args) && !strings.HasPrefix(args[j+1], "-")
			switch {
			case flag == EndpointFlag:
				newArgs = append(newArgs, "--"+EndpointFlag+"="+e.Endpoint)
				set = true
			case e.DropDockershim && slices.Contains(DockershimFlags, flag):
				// dropped
			default:
				newArgs = append(newArgs, a)
				if takesNext {
					newArgs = append(newArgs, args[j+1])
				}
			}
			if takesNext {
				j++
			}
		}
		if name == e.AddTo {
			addedTo = true
		}
		lines[i] = name + `="` + strings.Join(newArgs, " ") + `"`
		if slices.Equal(args, newArgs) {
			lines[i] = line // untouched lines keep their exact form
		}
	}
	if !set && e.AddTo != "" {
		flag := "--" + EndpointFlag + "=" + e.Endpoint
		if addedTo {
			for i, line := range lines {
				name, value, ok := strings.Cut(strings.TrimSpace(line), "=")
				if ok && strings.TrimSpace(name) == e.AddTo {
					args := append(SplitArgs(unquote(strings.TrimSpace(value))), flag)
					lines[i] = e.AddTo + `="` + strings.Join(args, " ") + `"`
					break
				}
			}
		} else {
			lines = append(lines, e.AddTo+`="`+flag+`"`)
		}
	}
	for _, l := range lines {
		out.WriteString(l)
		out.WriteByte('\n')
	}
	return out.Bytes(), !bytes.Equal(out.Bytes(), data), nil
}

var endpointLine = regexp.MustCompile(`(?m)^` + EndpointField + `:.*$`)

// RewriteConfig sets containerRuntimeEndpoint in a KubeletConfiguration
// document, editing only that line (or appending it) so comments and layout
// survive, and checks the result still parses with the new value.
func RewriteConfig(data []byte, endpoint string) ([]byte, bool, error) {
	line := EndpointField + ": " + endpoint
	var out []byte
	if endpointLine.Match(data) {
		out = endpointLine.ReplaceAll(data, []byte(line))
	} else {
		out = append([]byte{}, data...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, line+"\n"...)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		return nil, false, fmt.Errorf("rewritten KubeletConfiguration does not parse: %w", err)
	}
	if got, _ := doc[EndpointField].(string); got != endpoint {
		return nil, false, fmt.Errorf("rewritten KubeletConfiguration has %s %q, want %q", EndpointField, got, endpoint)
	}
	return out, !bytes.Equal(out, data), nil
}

// WriteFileAtomic replaces path with data (write, fsync, rename), keeping
// the old file's mode.
func WriteFileAtomic(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
