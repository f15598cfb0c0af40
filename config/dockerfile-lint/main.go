// Command dockerfile-lint checks a Dockerfile where no container engine runs: it parses
// it with BuildKit's own parser (what `docker build` uses), applies BuildKit's lint
// rules, and checks what the parser leaves to the build: ENTRYPOINT and CMD in exec
// form (signals reach mirrorgate, not a shell) and COPY --from naming an earlier stage.
// With -plan it then prints the stages as JSON (base, workdir, RUN lines, copies, user,
// entrypoint, cmd), so config/verify-image-runtime can rebuild the image's file system
// without an engine.
//
//	go run . [-plan] ../../Dockerfile
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	args := os.Args[1:]
	plan := len(args) == 2 && args[0] == "-plan"
	if plan {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-lint [-plan] DOCKERFILE")
		os.Exit(2)
	}
	path := args[0]
	stages, problems, err := check(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
		os.Exit(1)
	}
	for _, p := range problems {
		fmt.Fprintf(os.Stderr, "%s: %s\n", path, p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	if plan {
		out, err := json.MarshalIndent(describe(stages), "", "  ")
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(1)
		}
		fmt.Println(string(out))
		return
	}
	fmt.Printf("%s: parsed and linted\n", path)
}

// stagePlan is what a stage does, in the terms an engine-less rebuild needs.
type stagePlan struct {
	Name       string     `json:"name"`
	Base       string     `json:"base"`
	Workdir    string     `json:"workdir"`
	Runs       []string   `json:"runs"`
	Copies     []copyPlan `json:"copies"`
	User       string     `json:"user"`
	Entrypoint []string   `json:"entrypoint"`
	Cmd        []string   `json:"cmd"`
}

type copyPlan struct {
	From    string   `json:"from"`
	Sources []string `json:"sources"`
	Dest    string   `json:"dest"`
}

func describe(stages []instructions.Stage) []stagePlan {
	plans := make([]stagePlan, 0, len(stages))
	for _, stage := range stages {
		p := stagePlan{Name: stage.Name, Base: stage.BaseName, Runs: []string{}, Copies: []copyPlan{}}
		for _, command := range stage.Commands {
			switch c := command.(type) {
			case *instructions.WorkdirCommand:
				p.Workdir = c.Path
			case *instructions.RunCommand:
				p.Runs = append(p.Runs, strings.Join(c.CmdLine, " "))
			case *instructions.CopyCommand:
				p.Copies = append(p.Copies, copyPlan{From: c.From, Sources: c.SourcePaths, Dest: c.DestPath})
			case *instructions.UserCommand:
				p.User = c.User
			case *instructions.EntrypointCommand:
				p.Entrypoint = c.CmdLine
			case *instructions.CmdCommand:
				p.Cmd = c.CmdLine
			}
		}
		plans = append(plans, p)
	}
	return plans
}

func check(path string) ([]instructions.Stage, []string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer file.Close()
	ast, err := parser.Parse(file)
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
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
	return stages, problems, nil
}

func line(location []parser.Range) int {
	if len(location) == 0 {
		return 0
	}
	return location[0].Start.Line
}
