"""Persona clustering: which River estimator recovers the generator's planted personas?

For each seed: generate a clickstream (``intentstream.stream.synth.clickstream``) with its ground truth, cut it
into closed intent segments with the offline sessionizer (``intentstream.stream.engine.offline``, the live
engine on a file), then let each estimator learn the segments in the order they close. Scores, median over the seeds:

* **ARI majority**: adjusted Rand index of each user's cluster, the majority of the
  clusters their segments got when learned, against the planted persona. Cluster
  renumbering during learning (DBSTREAM, CluStream) costs here, as it would live.
* **ARI live (distinctive)**: the same for the persona the live system publishes,
  ``PersonaModel.assignment`` under the default ``assignment = "distinctive"`` rule (the
  cluster where the user over-indexes most; recent votes only).
* **ARI majority, final model**: majority again, every segment re-predicted by the final
  model (what a batch re-scoring would give).
* **seg/s**: segments learned per second (features + scaler + estimator + statistics).
* **clusters**: clusters holding segments at the end.

    python -m bench.personas [--users 1500] [--days 7] [--seeds 3] [--synthetic]
        [--estimators kmeans,dbstream,clustream,streamkmeans] [--scale-users 100000]

``--scale-users N`` also measures a model that has seen N users (synthetic segments,
``intentstream.stream.synth.segments``): learning rate, checkpoint size and time, and the report build
time (markdown and HTML).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from bench.common import machine
from intentstream.stream.personas.model import PersonaModel
from intentstream.stream.personas.scoring import adjusted_rand_index
from intentstream.stream.settings import PersonaSettings, Settings

#: Estimator variants compared: name -> [personas] overrides ("river" swaps in River's own
#: KMeans, randomly initialised, for reference).
VARIANTS: dict[str, dict[str, Any]] = {
    "kmeans (default, k=12)": {"estimator": "kmeans"},
    "kmeans k=8": {"estimator": "kmeans", "n_clusters": 8},
    "kmeans categorical x1": {"estimator": "kmeans", "categorical_weight": 1.0},
    "kmeans numeric only": {"estimator": "kmeans", "categorical_weight": 0.0},
    "river KMeans (random init)": {"estimator": "kmeans", "river": True},
    "streamkmeans": {"estimator": "streamkmeans"},
    "clustream": {"estimator": "clustream"},
    "dbstream": {"estimator": "dbstream"},
}


def trace_segments(users: int, days: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Segments (dicts, in close order) and user -> planted persona of a generated trace."""
    from intentstream.stream.synth.clickstream import generate_events, generate_truth
    from intentstream.stream.synth.config import GeneratorConfig

    cfg = GeneratorConfig(users=users, days=days, seed=seed)
    truth = {t["user_id"]: t["persona"] for t in generate_truth(cfg)}
    return _sessionize(generate_events(cfg)), truth


def _sessionize(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    from intentstream.stream import codec
    from intentstream.stream.report.sources import segments_from_clickstream

    lines = ((i, codec.dumps(e)) for i, e in enumerate(events, 1))
    return list(segments_from_clickstream(lines, Settings.defaults()))


def synthetic(users: int, days: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    from intentstream.stream.synth.segments import synthetic_segments, synthetic_truth

    return list(synthetic_segments(users, seed=seed, days=days)), synthetic_truth(users, seed)


def _majority(votes: Counter[int]) -> int:
    return min(votes, key=lambda c: (-votes[c], c))


def score(cfg: PersonaSettings, segments: list[dict[str, Any]], truth: dict[str, str], river: bool = False) -> dict[str, float]:
    model = PersonaModel(cfg)
    if river:  # River's KMeans as shipped: centers drawn from N(0, 1), fixed step
        from river import cluster

        model._estimator = cluster.KMeans(n_clusters=cfg.n_clusters, halflife=cfg.kmeans_halflife, seed=cfg.seed)
        model._learn_predict = model._estimator.learn_predict_one
    learned: dict[str, Counter[int]] = {}
    started = time.perf_counter()
    for seg in segments:
        c = model.learn_one(seg)
        learned.setdefault(seg["user_id"], Counter())[c] += 1
    elapsed = time.perf_counter() - started
    users = sorted(model.users)
    planted = [truth[u] for u in users]
    final: dict[str, Counter[int]] = {}
    for seg in segments:
        final.setdefault(seg["user_id"], Counter())[model.predict_one(seg)] += 1
    return {
        "ari_majority": adjusted_rand_index(planted, [_majority(learned[u]) for u in users]),
        "ari_live": adjusted_rand_index(planted, [model.assignment(u) for u in users]),
        "ari_final": adjusted_rand_index(planted, [_majority(final[u]) for u in users]),
        "rate": len(segments) / elapsed,
        "clusters": len(model.clusters()),
    }


def compare(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    source = synthetic if args.synthetic else trace_segments
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.estimators}
    n_segments = []
    for seed in range(args.seeds):
        segments, truth = source(args.users, args.days, seed)
        n_segments.append(len(segments))
        for name in args.estimators:
            overrides = dict(VARIANTS[name])
            river = overrides.pop("river", False)
            cfg = PersonaSettings.defaults(seed=seed, **overrides)
            runs[name].append(score(cfg, segments, truth, river))
    rows = [(name, {k: statistics.median(r[k] for r in rs) for k in rs[0]}) for name, rs in runs.items()]
    what = "synthetic segments" if args.synthetic else "generated clickstream -> sessionizer"
    print(f"\n## Persona estimators: {args.users} users x {args.days} days, {what}, "
          f"median of {args.seeds} seeds (~{int(statistics.median(n_segments)):,} segments)  ({machine()})\n")
    print("| estimator | ARI majority | ARI live (distinctive) | ARI majority, final model | segments learned/s | clusters |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in rows:
        print(
            f"| {name} | {m['ari_majority']:.3f} | {m['ari_live']:.3f} | {m['ari_final']:.3f} "
            f"| {m['rate']:,.0f} | {m['clusters']:.0f} |"
        )
    return rows


def scale(users: int, days: int) -> None:
    from intentstream.stream.report.html import render_html
    from intentstream.stream.report.markdown import render_markdown
    from intentstream.stream.report.model import build_report
    from intentstream.stream.synth.segments import synthetic_segments

    model = PersonaModel(PersonaSettings.defaults())
    learn_s = 0.0
    n = 0
    for seg in synthetic_segments(users, seed=0, days=days):  # synthesis time not counted
        t0 = time.perf_counter()
        model.learn_one(seg)
        learn_s += time.perf_counter() - t0
        n += 1
    t0 = time.perf_counter()
    blob = model.checkpoint()
    ckpt_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    restored = PersonaModel.from_checkpoint(blob, PersonaSettings.defaults())
    restore_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    render_html(build_report(PersonaModel.from_checkpoint(blob, PersonaSettings.defaults()), lang="zh"))
    live_s = time.perf_counter() - t0
    assert restored.segments_seen == model.segments_seen
    timings = {}
    for fmt, render in (("md", render_markdown), ("html", render_html)):
        for lang in ("zh", "en"):
            best = []
            for _ in range(5):
                t0 = time.perf_counter()
                render(build_report(model, lang=lang))
                best.append(time.perf_counter() - t0)
            timings[f"{fmt} {lang}"] = statistics.median(best)
    print(f"\n## Scale: a model that has seen {len(model.users):,} users, {n:,} segments  ({machine()})\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| learn (synthetic segments) | {n / learn_s:,.0f} segments/s |")
    print(f"| checkpoint size | {len(blob) / 1e6:.1f} MB |")
    print(f"| checkpoint / restore | {ckpt_s * 1000:.0f} ms / {restore_s * 1000:.0f} ms |")
    for k, v in timings.items():
        print(f"| report build + render, {k} | {v * 1000:.1f} ms |")
    print(f"| live report: restore checkpoint + build + render html zh | {live_s * 1000:.0f} ms |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true", help="synthetic segments instead of generator + sessionizer")
    ap.add_argument("--estimators", type=lambda s: s.split(","), default=list(VARIANTS))
    ap.add_argument("--scale-users", type=int, default=0, metavar="N")
    args = ap.parse_args(argv)
    unknown = set(args.estimators) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown estimator variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if args.seeds:
        compare(args)
    if args.scale_users:
        scale(args.scale_users, args.days)


if __name__ == "__main__":
    main()
