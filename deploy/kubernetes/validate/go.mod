module telemetry-gateway/deploy/kubernetes/validate

go 1.25

require (
	k8s.io/api v0.37.2
	k8s.io/apimachinery v0.37.2
)
