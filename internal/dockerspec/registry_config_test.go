package dockerspec

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/registry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestConfigFileAuth(t *testing.T) {
	alice := base64.StdEncoding.EncodeToString([]byte("alice:wonderland"))
	for _, tc := range []struct {
		name     string
		file     string
		registry string
		want     *runtimeapi.AuthConfig
		helper   string
		wantErr  bool
	}{
		{name: "exact key", registry: "127.0.0.1:5000",
			file: `{"auths":{"127.0.0.1:5000":{"auth":"` + alice + `"}}}`,
			want: &runtimeapi.AuthConfig{Auth: alice, ServerAddress: "127.0.0.1:5000"}},
		{name: "key with a scheme and a path", registry: "127.0.0.1:5000",
			file: `{"auths":{"http://127.0.0.1:5000/v2/":{"auth":"` + alice + `"}}}`,
			want: &runtimeapi.AuthConfig{Auth: alice, ServerAddress: "http://127.0.0.1:5000/v2/"}},
		{name: "Docker Hub's key", registry: "docker.io",
			file: `{"auths":{"https://index.docker.io/v1/":{"auth":"` + alice + `"}}}`,
			want: &runtimeapi.AuthConfig{Auth: alice, ServerAddress: "https://index.docker.io/v1/"}},
		{name: "host names are not case-sensitive", registry: "registry.example",
			file: `{"auths":{"Registry.Example":{"username":"u","password":"p"}}}`,
			want: &runtimeapi.AuthConfig{Username: "u", Password: "p", ServerAddress: "Registry.Example"}},
		{name: "identity token", registry: "registry.example",
			file: `{"auths":{"registry.example":{"username":"<token>","identitytoken":"idt"}}}`,
			want: &runtimeapi.AuthConfig{Username: "<token>", IdentityToken: "idt", ServerAddress: "registry.example"}},
		{name: "another registry's entry", registry: "127.0.0.1:5000",
			file: `{"auths":{"127.0.0.1:5001":{"auth":"` + alice + `"}}}`},
		{name: "a port is part of the host", registry: "127.0.0.1",
			file: `{"auths":{"127.0.0.1:5000":{"auth":"` + alice + `"}}}`},
		{name: "no auths", registry: "docker.io", file: `{}`},
		{name: "credentials in a store", registry: "docker.io",
			file:   `{"auths":{"https://index.docker.io/v1/":{}},"credsStore":"desktop"}`,
			helper: "desktop"},
		{name: "a helper for this registry", registry: "registry.example",
			file:   `{"credHelpers":{"registry.example":"ecr-login"}}`,
			helper: "ecr-login"},
		{name: "an entry with credentials wins over the store", registry: "registry.example",
			file: `{"auths":{"registry.example":{"auth":"` + alice + `"}},"credsStore":"desktop"}`,
			want: &runtimeapi.AuthConfig{Auth: alice, ServerAddress: "registry.example"}},
		{name: "not JSON", registry: "docker.io", file: `auths: {}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, helper, err := ConfigFileAuth([]byte(tc.file), tc.registry)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if helper != tc.helper {
				t.Errorf("helper = %q, want %q", helper, tc.helper)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && got.String() != tc.want.String()) {
				t.Errorf("auth = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestConfigFileAuthBecomesTheHeader: an entry goes through RegistryAuth,
// as kubelet's credentials do, into the header Docker reads.
func TestConfigFileAuthBecomesTheHeader(t *testing.T) {
	alice := base64.StdEncoding.EncodeToString([]byte("alice:wonderland"))
	a, _, err := ConfigFileAuth([]byte(`{"auths":{"127.0.0.1:5000":{"auth":"`+alice+`"}}}`), "127.0.0.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	h, err := RegistryAuth(a)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.URLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var got registry.AuthConfig
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Username != "alice" || got.Password != "wonderland" || !strings.Contains(got.ServerAddress, "127.0.0.1:5000") {
		t.Errorf("header = %+v", got)
	}
}
