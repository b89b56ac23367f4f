package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/doctor"
	"github.com/berth-cri/berth/internal/kubeletcfg"
	"github.com/berth-cri/berth/internal/migrate"
)

// adminKubeconfig is kubeadm's cluster-admin kubeconfig on control-plane
// nodes; draining needs more than kubelet's own credentials.
const adminKubeconfig = "/etc/kubernetes/admin.conf"

func newMigrateCommand() *cobra.Command {
	var (
		kubeconfig string
		configFile string
		opts       = migrate.Options{
			StateFile:          migrate.DefaultStateFile,
			GracePeriodSeconds: -1,
			DrainTimeout:       15 * time.Minute,
			ReadyTimeout:       5 * time.Minute,
			KubeletUnit:        "kubelet",
		}
	)
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Move this node's kubelet to Berth (from dockershim, cri-dockerd or another runtime), or back",
		Long: `Move this node's kubelet to Berth: check Berth answers, cordon the node, drain
it (PodDisruptionBudgets honoured, DaemonSet pods left alone), point kubelet's
runtime endpoint at Berth in every file that sets it (kubeadm-flags.env,
/etc/default/kubelet, the KubeletConfiguration; each backed up with the suffix
` + migrate.BackupSuffix + `), update the node's ` + migrate.CRISocketAnnotation + `
annotation if it has one, restart kubelet, wait for the node to be Ready on the
new runtime, and uncordon it.

The plan is printed first. Without --yes nothing is changed. Each step is
recorded in --state-file: if a step fails, fix the cause and rerun the same
command to resume. --rollback (with --yes) restores the files and annotation
and restarts kubelet on its previous runtime.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Endpoint == "" {
				ep, err := berthEndpoint(cmd)
				if err != nil {
					return err
				}
				opts.Endpoint = ep
			}
			if opts.Node == "" {
				settings, _ := kubeletcfg.Discover(opts.Kubelet)
				opts.Node = settings.HostnameOverride()
				if opts.Node == "" {
					h, err := os.Hostname()
					if err != nil {
						return err
					}
					opts.Node = strings.ToLower(h)
				}
			}
			client, err := kubeClient(kubeconfig)
			if err != nil {
				return err
			}
			opts.Client = client
			opts.Out = cmd.OutOrStdout()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return migrate.Run(ctx, opts)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig with rights to cordon and drain this node; default: $KUBECONFIG, "+adminKubeconfig+" if present, else ~/.kube/config.")
	fs.StringVar(&opts.Node, "node", "", "This node's name in the cluster; default: kubelet's --hostname-override, else the host name.")
	fs.StringVar(&opts.Endpoint, "runtime-endpoint", "", "Berth's CRI endpoint to point kubelet at; default: container-runtime-endpoint from Berth's configuration ("+doctor.DefaultSocket+" for fd://).")
	config.BindConfigFlag(fs, &configFile)
	fs.BoolVar(&opts.Yes, "yes", false, "Carry out the plan; without it nothing is changed.")
	fs.BoolVar(&opts.Rollback, "rollback", false, "Undo a migration: restore kubelet's files and the node annotation, restart kubelet on its previous runtime.")
	fs.StringVar(&opts.StateFile, "state-file", opts.StateFile, "Where progress is recorded, for resuming and rolling back.")
	fs.StringVar(&opts.Kubelet.ConfigFile, "kubelet-config", "", "kubelet's KubeletConfiguration file; default: the running kubelet's --config, else "+kubeletcfg.DefaultConfigFile+".")
	fs.StringVar(&opts.Kubelet.KubeadmFlagsFile, "kubeadm-flags-file", kubeletcfg.DefaultKubeadmFlagsFile, "kubeadm's kubelet flags file.")
	fs.StringVar(&opts.Kubelet.DefaultsFile, "kubelet-defaults-file", kubeletcfg.DefaultDefaultsFile, "The distribution's kubelet environment file (KUBELET_EXTRA_ARGS).")
	fs.StringVar(&opts.Kubelet.ProcRoot, "proc-root", kubeletcfg.DefaultProcRoot, "Where processes are listed (to find the running kubelet).")
	fs.StringVar(&opts.KubeletUnit, "kubelet-unit", opts.KubeletUnit, "kubelet's systemd unit.")
	fs.BoolVar(&opts.Force, "force", false, "Drain pods that no controller manages (they are deleted for good), as kubectl drain --force.")
	fs.BoolVar(&opts.DeleteEmptyDirData, "delete-emptydir-data", false, "Drain pods with emptyDir volumes (their data is lost), as kubectl drain --delete-emptydir-data.")
	fs.IntVar(&opts.GracePeriodSeconds, "grace-period", opts.GracePeriodSeconds, "Seconds each pod gets to stop; -1 uses the pod's own.")
	fs.DurationVar(&opts.DrainTimeout, "drain-timeout", opts.DrainTimeout, "Give up draining after this long (a PodDisruptionBudget can block eviction); 0 waits forever.")
	fs.DurationVar(&opts.ReadyTimeout, "ready-timeout", opts.ReadyTimeout, "How long to wait for the node to be Ready after kubelet restarts.")
	return cmd
}

// berthEndpoint derives Berth's endpoint from its configuration file.
func berthEndpoint(cmd *cobra.Command) (string, error) {
	cfg := config.Default()
	var path string
	flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	cfg.BindFlags(flags)
	config.BindConfigFlag(flags, &path)
	if f := cmd.Flags().Lookup(config.ConfigFlag); f != nil && f.Changed {
		if err := flags.Set(config.ConfigFlag, f.Value.String()); err != nil {
			return "", err
		}
	}
	if err := config.ApplyFile(flags); err != nil {
		return "", err
	}
	scheme, addr, err := config.ParseEndpoint(cfg.Endpoint)
	if err != nil {
		return "", fmt.Errorf("Berth's container-runtime-endpoint: %w", err)
	}
	if scheme == "fd" {
		return "unix://" + doctor.DefaultSocket, nil
	}
	return "unix://" + addr, nil
}

func kubeClient(path string) (kubernetes.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	} else if os.Getenv("KUBECONFIG") == "" {
		if _, err := os.Stat(adminKubeconfig); err == nil {
			rules.ExplicitPath = adminKubeconfig
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	rc.UserAgent = "berth-migrate"
	return kubernetes.NewForConfig(rc)
}
