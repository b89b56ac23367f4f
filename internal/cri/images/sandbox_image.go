package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"

	"github.com/berth-cri/berth/internal/dockerspec"
	"github.com/berth-cri/berth/internal/logging"
)

// PullSandboxImage pulls the sandbox image for the runtime's pause.Ensurer,
// through the same shared pull as PullImage. kubelet never pulls the
// sandbox image and so never sends credentials for it; the node's own,
// what `docker login` wrote into Docker's configuration file, are used
// instead, as cri-dockerd's keyring did.
func (s *Service) PullSandboxImage(ctx context.Context, image string) error {
	ref, err := dockerspec.ParseImageRef(image)
	if err != nil {
		return err
	}
	auth, err := s.nodeRegistryAuth(ctx, ref.Registry())
	if err != nil {
		return err
	}
	_, err = s.sharedPull(ctx, ref, auth)
	return err
}

// nodeRegistryAuth returns the X-Registry-Auth value for registry from the
// Docker CLI configuration file of the user Berth runs as (dockerConfigFile),
// or "" when it has none.
func (s *Service) nodeRegistryAuth(ctx context.Context, registry string) (string, error) {
	path := dockerConfigFile()
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading Docker's configuration for the credentials of %s: %w", registry, err)
	}
	a, helper, err := dockerspec.ConfigFileAuth(data, registry)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if helper != "" {
		logging.FromContext(ctx).Warn("Docker's configuration keeps the credentials of this registry in a credential helper, which Berth does not run: pulling without credentials",
			"registry", registry, "helper", helper, "file", path)
	}
	auth, err := dockerspec.RegistryAuth(a)
	if err != nil {
		return "", fmt.Errorf("%s: the entry for %s: %w", path, registry, err)
	}
	if auth != "" {
		logging.FromContext(ctx).Debug("using the node's registry credentials", "registry", registry, "file", path)
	}
	return auth, nil
}

// dockerConfigFile is where the Docker CLI keeps its configuration:
// $DOCKER_CONFIG/config.json, else ~/.docker/config.json (the home
// directory from $HOME, else the user database: systemd gives a root
// service no $HOME). "" when there is no home directory either.
func dockerConfigFile() string {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json")
	}
	home := os.Getenv("HOME")
	if home == "" {
		if u, err := user.Current(); err == nil {
			home = u.HomeDir
		}
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}
