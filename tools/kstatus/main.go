// Command kstatus prints the status that sigs.k8s.io/cli-utils' kstatus computes for Kubernetes
// objects: the same verdict Flux's `wait: true`, `kubectl wait` and kpt act on.
//
// It reads JSON on stdin: one object, a JSON array of objects, or a List (`items`). For each
// object it prints one JSON line: {"kind", "namespace", "name", "status", "message"}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	objects, err := readObjects(in)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	for i, raw := range objects {
		// UnmarshalJSON, unlike encoding/json into a map, keeps integers as int64, the type
		// kstatus reads metadata.generation and status.observedGeneration as.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("object %d: %w", i, err)
		}
		result, err := status.Compute(u)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		line := verdict{u.GetKind(), u.GetNamespace(), u.GetName(), result.Status.String(), result.Message}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// readObjects accepts one object, a JSON array of objects, or a List with `items`.
func readObjects(in io.Reader) ([]json.RawMessage, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	var many []json.RawMessage
	if err := json.Unmarshal(data, &many); err == nil {
		return many, nil
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("stdin is not a JSON object, array or List: %w", err)
	}
	if list.Items != nil {
		return list.Items, nil
	}
	return []json.RawMessage{data}, nil
}
