// Command dockerfile-lint checks a Dockerfile where no container engine runs: it parses
// it with BuildKit's own parser (what `docker build` uses), applies BuildKit's lint
// rules, and checks what the parser leaves to the build: ENTRYPOINT and CMD in exec
// form (signals reach mirrorgate, not a shell) and COPY --from naming an earlier stage.
//
//	go run . ../../Dockerfile
package main

import (
	"fmt"
	"os"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-lint DOCKERFILE")
		os.Exit(2)
	}
	problems, err := check(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	for _, p := range problems {
		fmt.Fprintf(os.Stderr, "%s: %s\n", os.Args[1], p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	fmt.Printf("%s: parsed and linted\n", os.Args[1])
}

func check(path string) ([]string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	ast, err := parser.Parse(file)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, w := range ast.Warnings {
		problems = append(problems, fmt.Sprintf("line %d: %s", w.Location.Start.Line, w.Short))
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, _, _, msg string, location []parser.Range) {
			problems = append(problems, fmt.Sprintf("line %d: %s: %s", line(location), rule, msg))
		},
	})
	stages, _, err := instructions.Parse(ast.AST, lint)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, stage := range stages {
		for _, command := range stage.Commands {
			switch c := command.(type) {
			case *instructions.EntrypointCommand:
				if c.PrependShell {
					problems = append(problems, fmt.Sprintf("line %d: ENTRYPOINT in shell form: write it as a JSON array", line(c.Location())))
				}
			case *instructions.CmdCommand:
				if c.PrependShell {
					problems = append(problems, fmt.Sprintf("line %d: CMD in shell form: write it as a JSON array", line(c.Location())))
				}
			case *instructions.CopyCommand:
				if c.From != "" && !seen[c.From] {
					problems = append(problems, fmt.Sprintf("line %d: COPY --from=%s names no earlier stage", line(c.Location()), c.From))
				}
			}
		}
		if stage.Name != "" {
			seen[stage.Name] = true
		}
	}
	if len(stages) == 0 {
		problems = append(problems, "no build stage")
	}
	return problems, nil
}

func line(location []parser.Range) int {
	if len(location) == 0 {
		return 0
	}
	return location[0].Start.Line
}
