// Command validate reads Kubernetes manifests (a YAML stream, such as `kustomize build`
// prints) on stdin and decodes every document strictly into the Kubernetes API's own Go types
// (k8s.io/api, the groups the manifests use): an unknown field, a duplicate field, a wrong type or an unknown
// apiVersion/kind is an error. It needs no cluster. It does not check what only the API server
// checks (defaulting, cross-field validation, admission).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

func main() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, rbacv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	failed, count := 0, 0
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println("error reading:", err)
			os.Exit(2)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		count++
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			failed++
			fmt.Printf("INVALID document %d: %v\n", count, err)
			continue
		}
		fmt.Printf("ok %s %T\n", gvk.String(), obj)
	}
	fmt.Printf("%d documents, %d invalid\n", count, failed)
	if failed > 0 || count == 0 {
		os.Exit(1)
	}
}
