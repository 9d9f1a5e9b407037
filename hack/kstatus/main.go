// kstatus computes what Flux, Helm 4 (--wait) and kpt believe about objects: the status that
// sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute returns for each one.
//
// Input on stdin: what `kubectl get -o json` prints (one object or a List). Output: one JSON line
// per object: {"name", "status", "message"}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// integers as int64, as the API machinery reads them (encoding/json would make them float64)
	var obj map[string]interface{}
	if err := kjson.Unmarshal(data, &obj); err != nil {
		fail(err)
	}
	items := []interface{}{obj}
	if list, ok := obj["items"].([]interface{}); ok {
		items = list
	}
	out := json.NewEncoder(os.Stdout)
	for _, item := range items {
		u := &unstructured.Unstructured{Object: item.(map[string]interface{})}
		res, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		if err := out.Encode(result{u.GetName(), res.Status.String(), res.Message}); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
