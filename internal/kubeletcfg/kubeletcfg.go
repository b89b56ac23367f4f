// Package kubeletcfg reads, and rewrites, the places a node keeps kubelet's
// container runtime settings: kubeadm's kubeadm-flags.env, the distribution's
// /etc/default/kubelet, the KubeletConfiguration file, and the command line of
// the running kubelet.
package kubeletcfg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Default locations, as kubeadm and the Debian/RPM kubelet packages lay them out.
const (
	DefaultConfigFile       = "/var/lib/kubelet/config.yaml"
	DefaultKubeadmFlagsFile = "/var/lib/kubelet/kubeadm-flags.env"
	DefaultDefaultsFile     = "/etc/default/kubelet"
	DefaultProcRoot         = "/proc"
)

// Flag and field names.
const (
	EndpointFlag  = "container-runtime-endpoint"
	EndpointField = "containerRuntimeEndpoint"
	CgroupFlag    = "cgroup-driver"
	CgroupField   = "cgroupDriver"
)

// DockershimFlags are kubelet flags that only meant something with the
// built-in dockershim (kubelet 1.23 and older). Newer kubelets refuse to
// start with most of them; Berth takes the networking ones as its own flags.
var DockershimFlags = []string{
	"container-runtime", "docker-endpoint", "network-plugin", "cni-bin-dir",
	"cni-conf-dir", "cni-cache-dir", "network-plugin-mtu", "image-pull-progress-deadline",
	"experimental-dockershim-root-directory", "dockershim-root-directory",
}

// Paths says where to look; empty fields take the defaults.
type Paths struct {
	// ConfigFile is the KubeletConfiguration file. Empty: the running
	// kubelet's --config, else DefaultConfigFile.
	ConfigFile       string
	KubeadmFlagsFile string
	DefaultsFile     string
	ProcRoot         string
}

func (p Paths) withDefaults() Paths {
	if p.KubeadmFlagsFile == "" {
		p.KubeadmFlagsFile = DefaultKubeadmFlagsFile
	}
	if p.DefaultsFile == "" {
		p.DefaultsFile = DefaultDefaultsFile
	}
	if p.ProcRoot == "" {
		p.ProcRoot = DefaultProcRoot
	}
	return p
}

// Kind names a place kubelet settings come from.
type Kind string

// The places, lowest precedence first: kubelet's flags override its
// configuration file, and the unit file puts KUBELET_EXTRA_ARGS
// (/etc/default/kubelet) after KUBELET_KUBEADM_ARGS, so the last one wins.
const (
	KindConfig       Kind = "KubeletConfiguration"
	KindKubeadmFlags Kind = "kubeadm-flags.env"
	KindDefaults     Kind = "kubelet defaults file"
)

// Source is one file that sets (or could set) kubelet settings.
type Source struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"`
	// Exists is false for a file that is not there.
	Exists bool `json:"exists"`
	// Endpoint and CgroupDriver are what the file sets ("" if nothing).
	Endpoint     string `json:"endpoint,omitempty"`
	CgroupDriver string `json:"cgroupDriver,omitempty"`
	// DockershimFlags are dockershim-only flags the file passes.
	DockershimFlags []string `json:"dockershimFlags,omitempty"`
	// HostnameOverride is kubelet's --hostname-override, if set here.
	HostnameOverride string `json:"hostnameOverride,omitempty"`
}

// Process is a running kubelet.
type Process struct {
	PID  int      `json:"pid"`
	Args []string `json:"args"`
}

// Flag returns the value of --name on the process's command line.
func (p *Process) Flag(name string) string {
	v, _ := FlagValue(p.Args, name)
	return v
}

// Settings is what a node's files say about kubelet's runtime.
type Settings struct {
	// Sources, lowest precedence first.
	Sources []Source `json:"sources"`
	// Process is the running kubelet, if any.
	Process *Process `json:"process,omitempty"`
}

// Found reports whether any kubelet file exists.
func (s Settings) Found() bool {
	for _, src := range s.Sources {
		if src.Exists {
			return true
		}
	}
	return false
}

// Endpoint returns the runtime endpoint kubelet will use when it next
// starts, and the source setting it ("" if none does).
func (s Settings) Endpoint() (string, *Source) {
	return s.last(func(src Source) string { return src.Endpoint })
}

// CgroupDriver returns the cgroup driver kubelet's files set, and where.
func (s Settings) CgroupDriver() (string, *Source) {
	return s.last(func(src Source) string { return src.CgroupDriver })
}

// HostnameOverride returns kubelet's --hostname-override, if any file sets it.
func (s Settings) HostnameOverride() string {
	v, _ := s.last(func(src Source) string { return src.HostnameOverride })
	if v == "" && s.Process != nil {
		v = s.Process.Flag("hostname-override")
	}
	return v
}

func (s Settings) last(get func(Source) string) (string, *Source) {
	for i := len(s.Sources) - 1; i >= 0; i-- {
		if v := get(s.Sources[i]); v != "" {
			return v, &s.Sources[i]
		}
	}
	return "", nil
}

// Source returns the source of this kind, if Discover looked at one.
func (s Settings) Source(kind Kind) *Source {
	for i := range s.Sources {
		if s.Sources[i].Kind == kind {
			return &s.Sources[i]
		}
	}
	return nil
}

// Discover reads every place kubelet's runtime settings can be kept.
// Missing files are not errors; unreadable or malformed ones are.
func Discover(p Paths) (Settings, error) {
	p = p.withDefaults()
	var s Settings
	var errs []error
	proc, err := FindProcess(p.ProcRoot, "kubelet")
	if err != nil {
		errs = append(errs, err)
	}
	s.Process = proc

	configFile := p.ConfigFile
	if configFile == "" && proc != nil {
		configFile = proc.Flag("config")
	}
	if configFile == "" {
		configFile = DefaultConfigFile
	}
	cfg, err := readConfigSource(configFile)
	if err != nil {
		errs = append(errs, err)
	}
	s.Sources = append(s.Sources, cfg)
	for _, f := range []struct {
		kind Kind
		path string
	}{{KindKubeadmFlags, p.KubeadmFlagsFile}, {KindDefaults, p.DefaultsFile}} {
		src, err := readEnvSource(f.kind, f.path)
		if err != nil {
			errs = append(errs, err)
		}
		s.Sources = append(s.Sources, src)
	}
	return s, errors.Join(errs...)
}

func readConfigSource(path string) (Source, error) {
	src := Source{Kind: KindConfig, Path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return src, nil
	}
	if err != nil {
		return src, err
	}
	src.Exists = true
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return src, fmt.Errorf("%s: %w", path, err)
	}
	if kind, _ := doc["kind"].(string); kind != "" && kind != "KubeletConfiguration" {
		return src, fmt.Errorf("%s: kind is %q, not KubeletConfiguration", path, kind)
	}
	src.Endpoint, _ = doc[EndpointField].(string)
	src.CgroupDriver, _ = doc[CgroupField].(string)
	return src, nil
}

func readEnvSource(kind Kind, path string) (Source, error) {
	src := Source{Kind: kind, Path: path}
	vars, err := ReadEnvFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return src, nil
	}
	if err != nil {
		return src, err
	}
	src.Exists = true
	for _, v := range vars {
		args := SplitArgs(v.Value)
		if e, ok := FlagValue(args, EndpointFlag); ok {
			src.Endpoint = e
		}
		if c, ok := FlagValue(args, CgroupFlag); ok {
			src.CgroupDriver = c
		}
		if h, ok := FlagValue(args, "hostname-override"); ok {
			src.HostnameOverride = h
		}
		for _, name := range DockershimFlags {
			if _, ok := FlagValue(args, name); ok {
				src.DockershimFlags = append(src.DockershimFlags, name)
			}
		}
	}
	return src, nil
}

// EnvVar is one NAME=value line of an environment file.
type EnvVar struct {
	Name  string
	Value string
}

// ReadEnvFile parses a systemd EnvironmentFile: NAME=value lines, values
// optionally in single or double quotes; comments and blank lines skipped.
func ReadEnvFile(path string) ([]EnvVar, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var vars []EnvVar
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vars = append(vars, EnvVar{Name: strings.TrimSpace(strings.TrimPrefix(name, "export ")), Value: unquote(strings.TrimSpace(value))})
	}
	return vars, sc.Err()
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		if v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
		return v[1 : len(v)-1]
	}
	return v
}

// SplitArgs splits a command line on white space, honouring simple quotes.
func SplitArgs(s string) []string {
	var args []string
	var cur strings.Builder
	inArg := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote = r
			inArg = true
		case r == ' ' || r == '\t' || r == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

// FlagValue returns the value of the last --name (or -name) in args, written
// as --name=value or --name value, and whether it is there at all.
func FlagValue(args []string, name string) (string, bool) {
	value, found := "", false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		flag := strings.TrimLeft(a, "-")
		if flag == name {
			found = true
			value = ""
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				value = args[i+1]
				i++
			}
			continue
		}
		if n, v, ok := strings.Cut(flag, "="); ok && n == name {
			found, value = true, v
		}
	}
	return value, found
}

// FindProcess returns the first process under procRoot whose command name
// (comm) is name, or nil.
func FindProcess(procRoot, name string) (*Process, error) {
	procs, err := FindProcesses(procRoot, name)
	if err != nil || len(procs) == 0 {
		return nil, err
	}
	return &procs[0], nil
}

// FindProcesses returns every process under procRoot whose comm is name.
func FindProcesses(procRoot, name string) ([]Process, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", procRoot, err)
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "comm"))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil {
			continue // it exited
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		out = append(out, Process{PID: pid, Args: args})
	}
	return out, nil
}

// NormalizeEndpoint makes endpoints comparable: a bare path becomes
// unix://path, and the path is cleaned.
func NormalizeEndpoint(e string) string {
	e = strings.TrimSpace(e)
	if e == "" {
		return ""
	}
	if strings.HasPrefix(e, "/") {
		e = "unix://" + e
	}
	if path, ok := strings.CutPrefix(e, "unix://"); ok {
		return "unix://" + filepath.Clean(path)
	}
	return e
}

// SameEndpoint reports whether two endpoints name the same socket,
// following symbolic links in the path (/var/run is usually /run).
func SameEndpoint(a, b string) bool {
	a, b = NormalizeEndpoint(a), NormalizeEndpoint(b)
	if a == b {
		return true
	}
	pa, oka := strings.CutPrefix(a, "unix://")
	pb, okb := strings.CutPrefix(b, "unix://")
	if !oka || !okb {
		return false
	}
	return resolve(pa) == resolve(pb)
}

func resolve(path string) string {
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return path
	}
	return filepath.Join(dir, filepath.Base(path))
}
