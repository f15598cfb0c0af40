// Package report holds what every Go client program of the client matrix shares: its
// arguments, failing with the step's name, and the JSON object it prints.
package report

import (
	"encoding/json"
	"fmt"
	"os"
)

// Args returns BOOTSTRAP TOPIC MIRROR_TOPIC GROUP from the command line.
func Args(program string) (bootstrap, topic, mirror, group string) {
	if len(os.Args) != 5 {
		Fail("usage", fmt.Errorf("%s BOOTSTRAP TOPIC MIRROR_TOPIC GROUP", program))
	}
	return os.Args[1], os.Args[2], os.Args[3], os.Args[4]
}

// Fail prints the failed step and exits 1.
func Fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", step, err)
	os.Exit(1)
}

// Errors is err as a list: empty when nil.
func Errors(err error) []string {
	if err == nil {
		return []string{}
	}
	return []string{err.Error()}
}

// Text is err's text, or nil.
func Text(err error) any {
	if err == nil {
		return nil
	}
	return err.Error()
}

// Print writes what the client saw as one JSON line.
func Print(seen map[string]any) {
	out, _ := json.Marshal(seen)
	fmt.Println(string(out))
}
