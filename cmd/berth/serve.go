package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-cri/berth/internal/app"
	"github.com/berth-cri/berth/internal/config"
)

func newServeCommand() *cobra.Command {
	cfg := config.Default()
	var configFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the CRI runtime and image services on a unix socket",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.ApplyFile(cmd.Flags()); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return app.Run(ctx, cfg)
		},
	}
	cfg.BindFlags(cmd.Flags())
	config.BindConfigFlag(cmd.Flags(), &configFile)
	return cmd
}
