package dockerspec

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// dockerConfigFile is the part of Docker's CLI configuration file
// (~/.docker/config.json, what `docker login` writes) that holds
// credentials.
type dockerConfigFile struct {
	Auths       map[string]dockerConfigAuth `json:"auths"`
	CredsStore  string                      `json:"credsStore"`
	CredHelpers map[string]string           `json:"credHelpers"`
}

type dockerConfigAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// ConfigFileAuth returns the credentials a Docker CLI configuration file
// holds for registry (a host as ImageRef.Registry gives it: docker.io,
// 127.0.0.1:5000), as CRI credentials for RegistryAuth; nil when it has
// none. An entry is found by the registry's host, however `docker login`
// spelled its key (https://127.0.0.1:5000, 127.0.0.1:5000/v2/; Docker
// Hub's is https://index.docker.io/v1/). helper names the credential
// helper that holds the credentials instead, when the file delegates them
// to one: Berth does not run helpers.
func ConfigFileAuth(data []byte, registry string) (auth *runtimeapi.AuthConfig, helper string, err error) {
	var f dockerConfigFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, "", fmt.Errorf("not a Docker configuration file: %v", err)
	}
	want := registryHost(registry)
	// An exact key first, then any key naming the same host.
	key, e, found := registry, f.Auths[registry], false
	if _, ok := f.Auths[registry]; ok {
		found = true
	} else {
		keys := slices.Sorted(maps.Keys(f.Auths)) // the same pick every time
		for _, k := range keys {
			if registryHost(k) == want {
				key, e, found = k, f.Auths[k], true
				break
			}
		}
	}
	if h := credHelper(f, want); h != "" && (!found || e == (dockerConfigAuth{})) {
		return nil, h, nil
	}
	if !found || e == (dockerConfigAuth{}) {
		return nil, "", nil
	}
	return &runtimeapi.AuthConfig{
		Username:      e.Username,
		Password:      e.Password,
		Auth:          e.Auth,
		ServerAddress: key,
		IdentityToken: e.IdentityToken,
		RegistryToken: e.RegistryToken,
	}, "", nil
}

// credHelper returns the credential helper the file names for host.
func credHelper(f dockerConfigFile, host string) string {
	for k, h := range f.CredHelpers {
		if registryHost(k) == host {
			return h
		}
	}
	return f.CredsStore
}

// registryHost reduces a registry as Docker's configuration names it to
// its host: the scheme and any path go, and Docker Hub's names become one.
func registryHost(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return s
}
