// Command composecheck loads and validates a compose file with compose-go,
// the library behind `docker compose config`, for machines without the plugin.
//
//	composecheck FILE [--print]
//
// Exits 0 and prints "ok: N services" (or, with --print, the resolved project
// as YAML) when FILE loads with schema validation and consistency checks on;
// exits 1 with the loader's error otherwise.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var file string
	printYAML := false
	for _, a := range args {
		switch {
		case a == "--print":
			printYAML = true
		case file == "":
			file = a
		default:
			return fmt.Errorf("usage: composecheck FILE [--print]")
		}
	}
	if file == "" {
		return fmt.Errorf("usage: composecheck FILE [--print]")
	}
	// The same option chain as `docker compose -f FILE config`: OS env, then an
	// optional .env beside FILE. No WithName: as compose does without -p, the
	// name comes from COMPOSE_PROJECT_NAME, the file's `name:` or its directory.
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithConsistency(true),
	)
	if err != nil {
		return err
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		return err
	}
	if !printYAML {
		fmt.Printf("ok: %d services\n", len(project.Services))
		return nil
	}
	out, err := project.MarshalYAML()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}
