package main

import "github.com/spf13/cobra"

func newMigrateCommand() *cobra.Command {
	return &cobra.Command{Use: "migrate", Hidden: true}
}
