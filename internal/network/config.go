// Package network sets up pod networking with CNI through libcni: it loads
// the network configuration, runs ADD/DEL/CHECK in a pod's network namespace
// and reads the pod's IPs from the result.
package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// ErrNoConfig means no usable CNI network configuration was found.
var ErrNoConfig = errors.New("no CNI network configuration")

// LoadConfig returns the network configuration in confDir that CNI runtimes
// use: the first file by name ending in .conflist, .conf or .json that
// parses. Every plugin it names must exist in one of binDirs.
func LoadConfig(confDir string, binDirs []string) (*libcni.NetworkConfigList, string, error) {
	files, err := libcni.ConfFiles(confDir, []string{".conflist", ".conf", ".json"})
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", confDir, err)
	}
	sort.Strings(files)
	var problems []string
	for _, f := range files {
		list, err := loadFile(f)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		if err := checkPlugins(list, binDirs); err != nil {
			return nil, f, fmt.Errorf("%s: %w", f, err)
		}
		return list, f, nil
	}
	if len(problems) > 0 {
		return nil, "", fmt.Errorf("%w in %s: %s", ErrNoConfig, confDir, strings.Join(problems, "; "))
	}
	return nil, "", fmt.Errorf("%w in %s", ErrNoConfig, confDir)
}

func loadFile(path string) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(path, ".conflist") {
		return libcni.ConfListFromFile(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	plugin, err := libcni.NetworkPluginConfFromBytes(data)
	if err != nil {
		return nil, err
	}
	if plugin.Network.Type == "" {
		// A .json file may be a conflist too.
		return libcni.ConfListFromBytes(data)
	}
	return libcni.ConfListFromConf(plugin)
}

func checkPlugins(list *libcni.NetworkConfigList, binDirs []string) error {
	var missing []string
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, binDirs); err != nil {
			missing = append(missing, p.Network.Type)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("CNI plugin(s) %s not found in %s", strings.Join(missing, ", "), strings.Join(binDirs, ":"))
	}
	return nil
}
