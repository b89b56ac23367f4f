package main

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-cri/berth/internal/config"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with Berth's configuration file",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print a configuration file with every setting commented out at its default",
		Long: "Print a configuration file (TOML) with every setting of `berth serve` commented out at\n" +
			"its default, under its description. Install it with:\n\n" +
			"  berth config default > " + config.DefaultFile,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return config.WriteDefaultFile(cmd.OutOrStdout(), serveFlags())
		},
	})
	return cmd
}

// serveFlags returns berth serve's flags at their defaults.
func serveFlags() *pflag.FlagSet {
	return newServeCommand().Flags()
}
