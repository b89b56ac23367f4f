package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/berth-cri/berth/internal/version"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Berth's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "berth %s\ngit commit: %s\ngo: %s %s/%s\n",
				version.String(), version.GitCommit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
