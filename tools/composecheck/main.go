// Command composecheck loads and validates compose files with compose-go,
// the library behind `docker compose config`, for machines without the plugin.
//
//	composecheck FILE [FILE...] [--print]
//
// Several files are merged in order, as `docker compose -f FILE -f FILE2`
// merges them (an override file on top of the base). Exits 0 and prints
// "ok: N services" (or, with --print, the resolved project as YAML) when they
// load with schema validation and consistency checks on; exits 1 with the
// loader's error otherwise.
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
	var files []string
	printYAML := false
	for _, a := range args {
		if a == "--print" {
			printYAML = true
		} else {
			files = append(files, a)
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("usage: composecheck FILE [FILE...] [--print]")
	}
	// The same option chain as `docker compose -f FILE config`: OS env, then an
	// optional .env beside the first FILE. No WithName: as compose does without
	// -p, the name comes from COMPOSE_PROJECT_NAME, the files' `name:` or the
	// first file's directory.
	opts, err := cli.NewProjectOptions(files,
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
