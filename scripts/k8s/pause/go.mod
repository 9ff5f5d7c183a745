// The pod sandbox's process for ./dev k8s: containerd's CRI needs a "pause" image, and none can
// be pulled here.
module iotinfer.local/k8s-pause

go 1.24.0
