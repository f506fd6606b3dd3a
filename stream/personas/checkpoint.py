"""Persona model checkpoints: the bytes the single writer saves and restores.

A checkpoint is ``MAGIC``, the length of a JSON header (8 bytes, big-endian), the header
(fingerprint, statistics, users' votes and the caller's ``meta``, e.g. the Kafka offsets
already learned; see :meth:`~intentstream.stream.personas.model.PersonaModel.state_dict`)
and the pickled River pipeline. :func:`model_fingerprint` is what a checkpoint must agree
with to be restored (the features and the estimator); knobs that do not shape the model
(checkpoint interval, report thresholds) may change across restarts.

Trust boundary: the model part is a ``pickle``, and unpickling runs code. Only restore
checkpoints this product wrote to its own Redis (or a file it wrote); never accept one
from users or other systems. :func:`read_checkpoint_meta` reads the header only, without
unpickling.

>>> from intentstream.stream.settings import PersonaSettings
>>> blob = encode_checkpoint({"fingerprint": model_fingerprint(PersonaSettings.defaults()), "meta": {"p": 1}}, [1, 2])
>>> read_checkpoint_meta(blob), decode_checkpoint(blob, PersonaSettings.defaults())[1]
({'p': 1}, [1, 2])
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from typing import Any, Final

from intentstream.stream import codec
from intentstream.stream.personas.features import FEATURE_VERSION
from intentstream.stream.settings import PersonaSettings

__all__ = [
    "CheckpointError",
    "decode_checkpoint",
    "encode_checkpoint",
    "model_fingerprint",
    "read_checkpoint_meta",
]

MAGIC: Final = b"intentstream-personas/1\n"


class CheckpointError(ValueError):
    """Bytes that are not a persona checkpoint, or one made for another estimator."""


def model_fingerprint(cfg: PersonaSettings) -> dict[str, Any]:
    """What a checkpoint must agree with to be restored: the features and the estimator."""
    params = {k: v for k, v in sorted(vars(cfg).items()) if k.startswith(cfg.estimator + "_")}
    if cfg.estimator in ("kmeans", "clustream", "streamkmeans"):
        params["kmeans_halflife"] = cfg.kmeans_halflife
    return {
        "features": FEATURE_VERSION,
        "estimator": cfg.estimator,
        "n_clusters": cfg.n_clusters,
        "seed": cfg.seed,
        "categorical_weight": cfg.categorical_weight,
        "params": params,
    }


def encode_checkpoint(state: Mapping[str, Any], pipeline: Any) -> bytes:
    """A checkpoint of the JSON ``state`` and the River ``pipeline``."""
    header = codec.dumps(state)
    return MAGIC + len(header).to_bytes(8, "big") + header + pickle.dumps(pipeline, protocol=5)


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
        raise CheckpointError("not a persona checkpoint")
    at = len(MAGIC)
    n = int.from_bytes(data[at : at + 8], "big")
    try:
        state = codec.loads(data[at + 8 : at + 8 + n])
    except codec.JSONDecodeError as exc:
        raise CheckpointError(f"corrupt checkpoint header: {exc}") from exc
    return state, data[at + 8 + n :]


def decode_checkpoint(data: bytes, settings: PersonaSettings) -> tuple[dict[str, Any], Any]:
    """The JSON state and the unpickled pipeline of a checkpoint made with ``settings``.

    Raises :class:`CheckpointError` for foreign bytes or a checkpoint of another estimator
    configuration (checked before anything is unpickled).
    """
    state, blob = _split(data)
    if state["fingerprint"] != model_fingerprint(settings):
        raise CheckpointError(
            f"checkpoint was made with {state['fingerprint']}, settings ask for {model_fingerprint(settings)}"
        )
    return state, _Unpickler(io.BytesIO(blob)).load()  # trusted: written by this product to its own store


#: Where the classes pickled into checkpoints lived in earlier releases -> where they live
#: now, so an upgrade keeps the model a running deployment has learned.
MOVED_MODULES: Final = {"stream.personas": "intentstream.stream.personas.model"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED_MODULES.get(module, module), name)


def read_checkpoint_meta(data: bytes) -> dict[str, Any]:
    """The ``meta`` of a checkpoint, without unpickling the model."""
    return dict(_split(data)[0]["meta"])
