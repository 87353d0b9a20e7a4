"""The harness behind ``make bench`` and ``make chaos``.

Independent of the operator's own machinery on purpose: the judge must not
share the bugs of the judged. The harness talks to the API server through a
small aiohttp client (:mod:`.kube`), runs the real ``aim-controller`` CLI as a
subprocess (:mod:`.operator`) and the real local control plane
(:mod:`.cluster`).
"""
