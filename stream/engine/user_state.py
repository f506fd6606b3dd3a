"""The engine's per-user record: the sessionizer's state, the trigger rules' state and
the highest input offset applied — stored as one value per user (``P:{u:<user>}:ses``).

Stored form (compact JSON, one list):
``[STATE_VERSION, hi, mx, profile, dedup log, buffer, session, late run, trigger state,
pending actions, watched outcomes]`` — items 2..7 are :meth:`SessionState.dump_fields`,
then :meth:`TriggerState.to_dict`, :meth:`PendingActions.to_list` and
:meth:`OutcomeWatch.to_list` (0 when empty; trailing empty items are left out, so older
records load unchanged).

>>> from intentstream.stream.sessions.sessionizer import SessionConfig
>>> st = UserState("u1"); st.hi = 41
>>> back = UserState.load("u1", st.dump(SessionConfig.from_settings()))
>>> back.hi, back.mx, back.sess, back.trig == st.trig
(41, -1, None, True)
"""

from __future__ import annotations

from typing import Final

from intentstream.stream import codec
from intentstream.stream.decisions.pending import PendingActions
from intentstream.stream.outcomes.watch import OutcomeWatch
from intentstream.stream.sessions.sessionizer import SessionConfig, SessionState
from intentstream.stream.triggers.state import TriggerState

STATE_VERSION: Final = 1


class UserState(SessionState):
    """:class:`SessionState` plus ``trig`` (the trigger rules' memory of this user),
    ``acts`` (the decisions still watched: held and recently sent), ``outs`` (the
    decisions whose attribution window is open) and ``hi`` (the highest input offset
    applied: redelivered offsets are skipped)."""

    __slots__ = ("hi", "trig", "acts", "outs")

    def __init__(self, user_id: str) -> None:
        super().__init__(user_id)
        self.hi = -1
        self.trig = TriggerState()
        self.acts = PendingActions()
        self.outs = OutcomeWatch()

    def dump(self, cfg: SessionConfig) -> bytes:
        self.prune_log(cfg)
        return self.dump_pruned()

    def dump_pruned(self) -> bytes:
        """The stored bytes of a state whose dedup log was pruned at its last commit."""
        if self.outs:
            tail = [self.acts.to_list() if self.acts else 0, self.outs.to_list()]
        else:
            tail = [self.acts.to_list()] if self.acts else []
        return codec.dumps([STATE_VERSION, self.hi, *self.stored_fields(), self.trig.to_dict() or 0, *tail])

    @classmethod
    def load(cls, user_id: str, data: bytes) -> UserState:
        a = codec.loads(data)
        if a[0] != STATE_VERSION:
            raise ValueError(f"user state of {user_id!r} has version {a[0]!r}, expected {STATE_VERSION}")
        st = cls.__new__(cls)
        st.user_id = user_id
        st.hi = a[1]
        st.load_fields(a[2:8])
        st.trig = TriggerState.from_dict(a[8] if len(a) > 8 else None)
        st.acts = PendingActions.from_list(a[9] if len(a) > 9 else None)
        st.outs = OutcomeWatch.from_list(a[10] if len(a) > 10 else None)
        return st
