package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-cri/berth/internal/daemonjson"
	"github.com/berth-cri/berth/internal/docker"
	"github.com/berth-cri/berth/internal/idmap"
)

// dockerRuntimeFlags are the flags of berth docker-runtime register and
// unregister.
type dockerRuntimeFlags struct {
	daemonJSON string
	berth      string
	runc       string
	reload     bool
	pidFile    string
	endpoint   string
	timeout    time.Duration
}

// newDockerRuntimeCommand registers Berth's OCI runtime wrapper in
// Docker's daemon.json (docs/containers.md, "Setting it up").
func newDockerRuntimeCommand() *cobra.Command {
	f := dockerRuntimeFlags{daemonJSON: daemonjson.DefaultPath, berth: "/usr/bin/berth",
		pidFile: "/var/run/docker.pid", endpoint: "unix:///var/run/docker.sock", timeout: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "docker-runtime",
		Short: "Register Berth's OCI runtime wrapper (" + idmap.RuntimeName + ") in Docker's daemon.json, or unregister it",
	}
	register := &cobra.Command{
		Use:   "register",
		Short: "Add the " + idmap.RuntimeName + " runtime to daemon.json, keeping every other setting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt := daemonjson.Wrapper(f.berth, f.runc)
			changed, err := daemonjson.Edit(f.daemonJSON, func(b []byte) ([]byte, bool, error) { return daemonjson.Register(b, rt) })
			return f.finish(cmd, changed, err, true)
		},
	}
	unregister := &cobra.Command{
		Use:   "unregister",
		Short: "Remove the " + idmap.RuntimeName + " runtime from daemon.json, keeping every other setting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			changed, err := daemonjson.Edit(f.daemonJSON, daemonjson.Unregister)
			return f.finish(cmd, changed, err, false)
		},
	}
	for _, c := range []*cobra.Command{register, unregister} {
		fs := c.Flags()
		fs.StringVar(&f.daemonJSON, "docker-daemon-json", f.daemonJSON, "Docker's daemon.json.")
		fs.BoolVar(&f.reload, "reload", false, "Send SIGHUP to dockerd (it reloads runtimes) and wait until Docker lists the change.")
		fs.StringVar(&f.pidFile, "docker-pid-file", f.pidFile, "dockerd's pid file, for --reload.")
		fs.StringVar(&f.endpoint, "docker-endpoint", f.endpoint, "Docker's endpoint, for --reload.")
		fs.DurationVar(&f.timeout, "timeout", f.timeout, "How long --reload waits for Docker.")
	}
	register.Flags().StringVar(&f.berth, "berth", f.berth, "The berth binary Docker runs as the runtime.")
	register.Flags().StringVar(&f.runc, "runc", "", "The runc the wrapper runs (runc 1.2 or newer); default: runc on Docker's PATH.")
	cmd.AddCommand(register, unregister)
	return cmd
}

func (f dockerRuntimeFlags) finish(cmd *cobra.Command, changed bool, err error, want bool) error {
	if err != nil {
		return err
	}
	verb := map[bool]string{true: "registered", false: "unregistered"}[want]
	if changed {
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s in %s\n", verb, idmap.RuntimeName, f.daemonJSON)
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "%s already %s in %s\n", idmap.RuntimeName, verb, f.daemonJSON)
	}
	if !f.reload {
		if changed {
			fmt.Fprintln(cmd.OutOrStdout(), "Docker reads it on SIGHUP or restart (or rerun with --reload)")
		}
		return nil
	}
	return f.reloadDocker(cmd.Context(), want)
}

// reloadDocker sends SIGHUP to dockerd and waits until its runtimes do (or
// do not) include berth-userns.
func (f dockerRuntimeFlags) reloadDocker(ctx context.Context, want bool) error {
	b, err := os.ReadFile(f.pidFile)
	if err != nil {
		return fmt.Errorf("--reload: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("--reload: %s does not hold a pid", f.pidFile)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("--reload: SIGHUP to dockerd (pid %d): %w", pid, err)
	}
	c, err := docker.New(docker.Options{Endpoint: f.endpoint, RequestTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	last := "no answer"
	for {
		h := c.Probe(ctx)
		if h.Ready {
			if slices.Contains(h.Daemon.Runtimes, idmap.RuntimeName) == want {
				return nil
			}
			last = "runtimes " + strings.Join(h.Daemon.Runtimes, ", ")
		} else {
			last = h.Reason
		}
		select {
		case <-ctx.Done():
			return errors.New("--reload: Docker did not pick up the change within " + f.timeout.String() + " (" + last + "); see dockerd's log")
		case <-time.After(500 * time.Millisecond):
		}
	}
}
