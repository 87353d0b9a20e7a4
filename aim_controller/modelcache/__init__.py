"""The model cache on a shared volume: its layout, the per-model manifest, the download
and cleanup commands the cache Jobs run, and the pure eviction policy.

No Kubernetes client here: the Jobs run these in the operator's image, and the
reconcilers import only the layout (paths) to build their objects.
"""
