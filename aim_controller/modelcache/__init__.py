"""The model cache on a shared volume: its layout, the per-model manifest, the download
and cleanup commands the cache Jobs run, and the pure eviction policy.

No Kubernetes client here: the Jobs run these in the operator's image, and the
reconcilers import only the layout (paths) to build their objects.

The interface the reconciler uses (the brief's, unchanged; additions marked +):

``aim-controller cache-download --root /cache --model <id> [--revision <rev>]
[--report-file PATH]``; env ``HF_TOKEN`` (optional), ``HF_ENDPOINT`` (optional, mirrors).
Report: ``{"model","state":"Ready"|"Failed","sizeBytes","revision","skipped","message"}``
where ``revision`` is the commit on disk (the one the Hub resolved) once Ready.
+ Exit codes: 0 Ready; 1 worth retrying (network, HTTP 5xx/429, a cut download: the
  partial download stays in ``.tmp`` and the next attempt resumes it); 2 usage;
  3 permanent (401/403 bad or missing token, gated model; 404 unknown model or
  revision; invalid id); 4 no space on the volume (checked before downloading too).
+ A request without ``--revision`` is satisfied by any complete copy; ``--revision X``
  by a copy whose commit is X or that was asked for as X (none asked for counts as
  "main"); another copy is replaced once the new one is complete.

``aim-controller cache-clean --root /cache --policy-json '<json>' [--capacity-bytes N]
[--report-file PATH] [--dry-run]``. Report: ``{"removed":[{"id","reason","sizeBytes"}],
"freedBytes","usedBytes","freeBytes","shortfallBytes","models":[{"id","sizeBytes",
"lastUsed"}]}`` + ``"dryRun"``, ``"tmpRemoved"``, ``"tmpFreedBytes"`` (abandoned
downloads removed), and ``"removedOmitted"``/``"modelsOmitted"`` when the 4,000-byte
limit clipped a list. + ``sizeBytes`` there is the model directory as it is on disk
(files and manifest: what deleting it frees); ``shortfallBytes`` is measured after the
deletions. Exit 0 (a shortfall included), 2 for a bad policy, 1 if the root is missing;
errors report ``{"error": "..."}``.
+ Eviction order for space: unlisted models, then those removed from the spec
  (``inSpec: false``), then those in it; each by priority (low first), least recently
  used, id. Models of 0 bytes are never evicted for space (see policy.py).

Both commands print the report as one JSON line on stdout (logs go to stderr, JSON) and
write it to ``--report-file``: by default ``/dev/termination-log`` when it exists and is
writable, ``""`` for stdout only.
"""
