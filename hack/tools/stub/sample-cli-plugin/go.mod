// k8s.io/sample-cli-plugin is not published on the Go module proxy; nothing we
// build imports it, but k8s.io/kubernetes lists it, so it needs some target.
module k8s.io/sample-cli-plugin

go 1.24
