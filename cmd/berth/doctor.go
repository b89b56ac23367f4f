package main

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/doctor"
	"github.com/berth-cri/berth/internal/kubeletcfg"
)

// exitError ends the process with a code, printing msg if it is not empty.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }
func (e exitError) ExitCode() int { return e.code }

func newDoctorCommand() *cobra.Command {
	cfg := config.Default()
	var (
		configFile string
		output     string
		opts       = doctor.Options{LeftoverPaths: doctor.DefaultLeftoverPaths}
	)
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that this node is ready to run pods through Berth",
		Long: `Check this node: Docker, the cgroup drivers of Docker and kubelet, CNI, the
pause image, Berth's socket, kubelet's runtime endpoint, what else uses
Docker's socket, Docker's daemon.json settings that affect pods, and what
dockershim or cri-dockerd left behind. Every problem comes with its fix.

Berth's own settings (socket, Docker endpoint, CNI directories, pause image)
come from the same configuration file and flags as berth serve.

Exit code: 0 when every check passes, 1 when the worst finding is a warning,
2 when a check fails, 3 when the doctor itself could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.ApplyFile(cmd.Flags()); err != nil {
				return exitError{3, err.Error()}
			}
			if output != "table" && output != "json" {
				return exitError{3, fmt.Sprintf("--output: %q is not table or json", output)}
			}
			opts.Config = cfg
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			report := doctor.Run(ctx, opts)
			var err error
			if output == "json" {
				err = report.WriteJSON(cmd.OutOrStdout())
			} else {
				err = report.WriteTable(cmd.OutOrStdout())
			}
			if err != nil {
				return exitError{3, err.Error()}
			}
			if code := report.Worst.ExitCode(); code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
	cmd.SetContext(context.Background())
	fs := cmd.Flags()
	cfg.BindFlags(fs)
	config.BindConfigFlag(fs, &configFile)
	fs.StringVarP(&output, "output", "o", "table", "Output format: table or json.")
	fs.StringVar(&opts.Socket, "socket", "", "Berth's socket to check; default: the --container-runtime-endpoint path, or "+doctor.DefaultSocket+" with fd://.")
	fs.StringVar(&opts.Kubelet.ConfigFile, "kubelet-config", "", "kubelet's KubeletConfiguration file; default: the running kubelet's --config, else "+kubeletcfg.DefaultConfigFile+".")
	fs.StringVar(&opts.Kubelet.KubeadmFlagsFile, "kubeadm-flags-file", kubeletcfg.DefaultKubeadmFlagsFile, "kubeadm's kubelet flags file.")
	fs.StringVar(&opts.Kubelet.DefaultsFile, "kubelet-defaults-file", kubeletcfg.DefaultDefaultsFile, "The distribution's kubelet environment file (KUBELET_EXTRA_ARGS).")
	fs.StringVar(&opts.DaemonJSON, "docker-daemon-json", doctor.DefaultDaemonJSON, "Docker's daemon.json.")
	fs.StringVar(&opts.ProcRoot, "proc-root", kubeletcfg.DefaultProcRoot, "Where processes are listed.")
	fs.StringSliceVar(&opts.LeftoverPaths, "leftover-paths", opts.LeftoverPaths, "Comma-separated paths where dockershim and cri-dockerd keep state, sockets and units.")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitError{3, err.Error()} })
	return cmd
}
