package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/berth-cri/berth/internal/ociruntime"
)

// newOCIRuntimeCommand is the OCI runtime Docker runs the containers of
// pods with a user namespace through (docs/containers.md, "User
// namespaces"). Its arguments are runc's, passed on unparsed.
func newOCIRuntimeCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "oci-runtime [--runc PATH] <runc arguments>",
		Short:              "OCI runtime wrapper around runc for pods with user namespaces (registered in Docker as berth-userns)",
		DisableFlagParsing: true,
		Run: func(_ *cobra.Command, args []string) {
			os.Exit(ociruntime.Run(args))
		},
	}
}
