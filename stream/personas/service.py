"""The single writer's pure API: learn segments, publish users' cluster personas, checkpoint.

River models cannot be merged, so exactly one process learns: the personas agent
(``agents/personas.py``) consumes the ``segments`` topic (all partitions), calls
:meth:`PersonaService.on_segment` for each segment, and :meth:`PersonaService.maybe_checkpoint`
regularly, which writes users' cluster personas, cluster labels and a checkpoint
(:meth:`~intentstream.stream.personas.model.PersonaModel.checkpoint`) to its
:class:`~intentstream.stream.state.personas.PersonaStore`. Trigger workers only read
users' cluster personas. On restart the agent restores the last checkpoint
(:meth:`PersonaService.start`): clusters keep their ids and learning continues exactly
where the checkpoint left off (replay the segments after the checkpoint, e.g. from the
Kafka offsets saved in the checkpoint's ``meta``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from intentstream.stream.personas.features import as_mapping
from intentstream.stream.personas.labels import cluster_label
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.playbook import load_playbook
from intentstream.stream.settings import PersonaSettings
from intentstream.stream.state.personas import PersonaStore

__all__ = ["Assignment", "PersonaService"]


@dataclass(frozen=True)
class Assignment:
    """What one segment did: its cluster (``segment_cluster``), and the user's cluster
    persona before (``previous``) and after (``cluster``)."""

    user_id: str
    segment_id: str | None
    segment_cluster: int
    cluster: int
    previous: int | None

    @property
    def changed(self) -> bool:
        return self.cluster != self.previous


class PersonaService:
    """The single writer's pure API: learn segments, publish users' cluster personas, checkpoint.

    The personas agent calls :meth:`on_segment` for each segment from the ``segments``
    topic and :meth:`maybe_checkpoint` after each batch (and on a timer) with the current
    time in ms; the service does no I/O of its own beyond its :class:`PersonaStore`.
    Changed assignments are written to the store on every :meth:`maybe_checkpoint`; the
    checkpoint itself (with cluster labels for readers) after ``checkpoint_every_segments``
    segments or ``checkpoint_every_s`` seconds.

    >>> from intentstream.stream.synth.segments import synthetic_segments
    >>> from intentstream.stream.settings import Settings
    >>> from intentstream.stream.state.memory.personas import MemoryPersonaStore
    >>> store = MemoryPersonaStore()
    >>> svc = PersonaService.start(Settings.defaults(), store)
    >>> segs = list(synthetic_segments(users=10, seed=3))
    >>> a = svc.on_segment(segs[0])
    >>> a.user_id == segs[0]["user_id"] and a.previous is None and a.changed
    True
    >>> svc.maybe_checkpoint(now_ms=0)  # first call: nothing due yet, assignments flushed
    False
    >>> store.get_assignment(a.user_id) == a.cluster
    True
    >>> svc.maybe_checkpoint(now_ms=60_000), store.load_checkpoint() is not None
    (True, True)
    >>> PersonaService.start(Settings.defaults(), store).model.segments_seen
    1
    """

    def __init__(self, settings: Any, store: PersonaStore, model: PersonaModel | None = None, meta: Mapping | None = None):
        self.settings: PersonaSettings = getattr(settings, "personas", settings)
        self.store = store
        self.model = model or PersonaModel(self.settings)
        self.meta: dict[str, Any] = dict(meta or {})
        self._pending: dict[str, int] = {}
        self._since_checkpoint = 0
        self._last_checkpoint_ms: int | None = None

    @classmethod
    def start(cls, settings: Any, store: PersonaStore) -> PersonaService:
        """A service resumed from the store's checkpoint, or a fresh one.

        A checkpoint made for another estimator configuration raises
        :class:`~intentstream.stream.personas.checkpoint.CheckpointError`; delete it
        deliberately to start over.
        """
        cfg: PersonaSettings = getattr(settings, "personas", settings)
        data = store.load_checkpoint()
        if data is None:
            return cls(cfg, store)
        model = PersonaModel(cfg)
        meta = model.restore(data)
        return cls(cfg, store, model, meta)

    def on_segment(self, segment: Any) -> Assignment:
        seg = as_mapping(segment)
        uid = seg.get("user_id")
        before = self.model.assignment(uid) if isinstance(uid, str) else None
        cid = self.model.learn_one(seg)
        after = self.model.assignment(uid) if isinstance(uid, str) else cid
        if isinstance(uid, str) and after != before:
            self._pending[uid] = after  # type: ignore[assignment]
        self._since_checkpoint += 1
        return Assignment(str(uid), seg.get("segment_id"), cid, after if after is not None else cid, before)

    def maybe_checkpoint(self, now_ms: int, *, force: bool = False, meta: Mapping[str, Any] | None = None) -> bool:
        """Flush changed assignments; checkpoint when due (or ``force``). True if it did.

        ``now_ms`` is the caller's clock (wall or event time, epoch ms); the first call
        starts the time interval. ``meta`` replaces the metadata saved with the checkpoint.
        """
        if meta is not None:
            self.meta = dict(meta)
        if self._pending:
            self.store.set_assignments(self._pending)
            self._pending = {}
        if self._last_checkpoint_ms is None:
            self._last_checkpoint_ms = now_ms
        cfg = self.settings
        due = (
            force
            or self._since_checkpoint >= cfg.checkpoint_every_segments
            or (self._since_checkpoint and now_ms - self._last_checkpoint_ms >= cfg.checkpoint_every_s * 1000)
        )
        if not due:
            return False
        self.store.save_checkpoint(self.model.checkpoint(self.meta), self.labels())
        self._since_checkpoint = 0
        self._last_checkpoint_ms = now_ms
        return True

    def labels(self) -> dict[int, dict[str, str]]:
        """Each cluster's label keys and zh/en texts, as readers of the store get them."""
        vocab = load_playbook(self.settings.playbook or None).vocab
        out: dict[int, dict[str, str]] = {}
        for st in self.model.clusters():
            lab = cluster_label(st)
            out[st.cluster_id] = {
                "stage": lab.stage,
                "urgency": lab.urgency,
                "activity": lab.activity,
                "zh": lab.text("zh", vocab),
                "en": lab.text("en", vocab),
            }
        return out
