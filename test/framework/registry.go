package framework

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RegistryBinary is Debian's docker-registry (distribution 2.8), installed
// by hack/setup.sh.
const RegistryBinary = "/usr/bin/docker-registry"

// RegistryOptions configure StartRegistry.
type RegistryOptions struct {
	// Dir is the storage directory; a fresh one when empty. Registries
	// started on one Dir serve the same images: push into one without
	// authentication, pull from another that requires it.
	Dir string
	// Users, when set, turns on HTTP basic authentication (an htpasswd
	// file written by `htpasswd -B`) for these user → password pairs.
	Users map[string]string
	// Token, when set, turns on token authentication against this token
	// server (Docker Hub's scheme).
	Token *TokenServer
}

// Registry is a private docker-registry process on a loopback port. Docker
// treats 127.0.0.0/8 registries as insecure, so it speaks plain HTTP.
type Registry struct {
	// Addr is host:port, the registry part of image references.
	Addr string
	Dir  string

	cmd    *exec.Cmd
	exited chan struct{}
	log    *lockedBuffer
}

// StartRegistry starts a registry; it is stopped (by pid) when tb ends.
func StartRegistry(tb testing.TB, opts RegistryOptions) *Registry {
	tb.Helper()
	if _, err := os.Stat(RegistryBinary); err != nil {
		tb.Fatalf("%s is missing (run hack/setup.sh): %v", RegistryBinary, err)
	}
	work := tb.TempDir()
	dir := opts.Dir
	if dir == "" {
		dir = filepath.Join(work, "storage")
	}
	auth := ""
	switch {
	case opts.Users != nil:
		var lines []string
		for user, pass := range opts.Users {
			// htpasswd (apache2-utils, installed by hack/setup.sh)
			// writes the bcrypt entries the registry reads.
			out, err := exec.Command("htpasswd", "-Bbn", user, pass).Output()
			if err != nil {
				tb.Fatalf("htpasswd -B (run hack/setup.sh): %v", err)
			}
			lines = append(lines, strings.TrimSpace(string(out)))
		}
		htpasswd := filepath.Join(work, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: berth-test\n    path: %s\n", htpasswd)
	case opts.Token != nil:
		auth = fmt.Sprintf("auth:\n  token:\n    realm: %s/token\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			opts.Token.URL, opts.Token.Service, opts.Token.Issuer, opts.Token.CertFile)
	}

	// The port is picked by binding :0 and released for the registry to
	// take; a lost race shows as the registry exiting, and is retried.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		addr, err := freeLoopbackPort()
		if err != nil {
			tb.Fatal(err)
		}
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
%s`, dir, addr, UniqueName("secret"), auth)
		cfgFile := filepath.Join(work, "config.yml")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			tb.Fatal(err)
		}
		r := &Registry{Addr: addr, Dir: dir, exited: make(chan struct{}), log: &lockedBuffer{}}
		r.cmd = exec.Command(RegistryBinary, "serve", cfgFile)
		r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := r.cmd.Start(); err != nil {
			tb.Fatalf("starting %s: %v", RegistryBinary, err)
		}
		go func() { _ = r.cmd.Wait(); close(r.exited) }()
		err = waitUntil(30*time.Second, r.exited, func() error {
			resp, err := http.Get("http://" + addr + "/v2/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
				return fmt.Errorf("GET /v2/: %s: %w", resp.Status, errNotReady)
			}
			return nil
		})
		if err == nil {
			tb.Cleanup(func() {
				r.Stop()
				if tb.Failed() {
					tb.Logf("registry %s log:\n%s", r.Addr, r.log.String())
				}
			})
			return r
		}
		r.Stop()
		lastErr = fmt.Errorf("%v\n%s", err, r.log.String())
	}
	tb.Fatalf("registry did not start: %v", lastErr)
	return nil
}

// Stop stops the registry (SIGTERM, then SIGKILL) and waits for it.
func (r *Registry) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

// PushIndex stores in the registry, as repo:tag, an image index (a
// "manifest list") whose one entry is the manifest repo@manifestDigest
// already there, for this host's platform, and returns the index's digest.
// The index has the media type that goes with the manifest's (OCI or
// Docker's), as Docker itself would push it. The registry must not require
// authentication.
func (r *Registry) PushIndex(tb testing.TB, repo, tag, manifestDigest string) string {
	tb.Helper()
	base := "http://" + r.Addr + "/v2/" + repo + "/manifests/"
	req, err := http.NewRequest(http.MethodGet, base+manifestDigest, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest+", "+dockerManifestType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("fetching manifest %s@%s: %v", repo, manifestDigest, err)
	}
	manifest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("fetching manifest %s@%s: %s %v: %s", repo, manifestDigest, resp.Status, err, manifest)
	}
	manifestType := resp.Header.Get("Content-Type")
	indexType := ocispec.MediaTypeImageIndex
	switch manifestType {
	case ocispec.MediaTypeImageManifest:
	case dockerManifestType:
		indexType = dockerManifestListType
	default:
		tb.Fatalf("manifest %s@%s has media type %q", repo, manifestDigest, manifestType)
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     indexType,
		"manifests": []map[string]any{{
			"mediaType": manifestType,
			"digest":    manifestDigest,
			"size":      len(manifest),
			"platform":  map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
		}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	req, err = http.NewRequest(http.MethodPut, base+tag, bytes.NewReader(index))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", indexType)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("pushing index %s:%s: %v", repo, tag, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		tb.Fatalf("pushing index %s:%s: %s: %s", repo, tag, resp.Status, body)
	}
	sum := sha256.Sum256(index)
	d := "sha256:" + hex.EncodeToString(sum[:])
	if got := resp.Header.Get("Docker-Content-Digest"); got != d {
		tb.Fatalf("pushing index %s:%s: the registry stored %s, want %s", repo, tag, got, d)
	}
	return d
}

// Docker's own manifest media types (schema 2), beside the OCI ones.
const (
	dockerManifestType     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestListType = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Log returns what the registry has logged.
func (r *Registry) Log() string { return r.log.String() }

// freeLoopbackPort returns 127.0.0.1:<a port free a moment ago>.
func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
