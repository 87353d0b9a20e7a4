"""The event recorder: background writing in order, aggregation of repeats."""

from __future__ import annotations

from typing import Any

from aim_controller.machinery.events import EventRecorder


class FakeWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.reasons: dict[str, str] = {}  # Event name -> reason

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", obj["reason"]))
        self.reasons[obj["metadata"]["name"]] = obj["reason"]
        return obj

    async def patch_merge(self, ref: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        # The reference names the Event as the real writer addresses it, nothing more.
        assert set(ref) == {"apiVersion", "kind", "metadata"} and ref["kind"] == "Event"
        self.calls.append(("patch", (self.reasons[ref["metadata"]["name"]], patch["count"])))
        return ref


OBJ = {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "x", "namespace": "n",
                                                          "uid": "u1"}}


async def test_emit_writes_in_order_in_the_background_and_aggregates_repeats() -> None:
    w = FakeWriter()
    rec = EventRecorder(w, "c", "i")  # type: ignore[arg-type]
    rec.emit(OBJ, "Normal", "A", "first")
    rec.emit(OBJ, "Warning", "B", "second")
    rec.emit(OBJ, "Normal", "A", "first")
    assert w.calls == []  # nothing written synchronously
    await rec.flush()
    assert w.calls == [("create", "A"), ("create", "B"), ("patch", ("A", 2))]
    await rec.close()


async def test_a_full_backlog_drops_instead_of_blocking() -> None:
    w = FakeWriter()
    rec = EventRecorder(w, "c", "i", backlog=2)  # type: ignore[arg-type]
    for i in range(5):
        rec.emit(OBJ, "Normal", f"R{i}", "m")
    await rec.flush()
    assert [c[1] for c in w.calls] == ["R0", "R1"]
    await rec.close()
