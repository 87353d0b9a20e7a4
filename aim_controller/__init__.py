"""aim-controller: a Kubernetes operator for LLM inference endpoints on AMD GPUs."""
