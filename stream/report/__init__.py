"""The persona report: one section per cluster persona, zh or en, Markdown or HTML.

==============  ============================================================================
``sources``     where the model comes from: the live checkpoint in Redis, a segments file,
                a clickstream file (through the offline sessionizer)
``domain``      the business domain the report speaks (``[report] domain``: auto,
                ecommerce, finance) and the journeys the data holds, read from the
                clusters' segment statistics
``playbooks``   that domain's playbook: the shared part of ``config/playbook.toml`` plus
                its ``[domain.<name>]`` table, minus entries about absent journeys
``model``       :func:`~intentstream.stream.report.model.build_report`: the report's
                content per cluster, as plain values (labels, key features, traits,
                strategies from the domain's playbook; small clusters folded)
``text``        the report's own words, zh and en (and the few a domain changes)
``markdown``    :func:`~intentstream.stream.report.markdown.render_markdown`
``html``        :func:`~intentstream.stream.report.html.render_html`: one self-contained
                page with inline CSS and SVG charts
==============  ============================================================================

The command is :mod:`intentstream.stream.cli.report` (``intentstream report``). The same
model gives byte-identical output (no generation timestamp; every ordering is by cluster
id or vocabulary).

>>> from intentstream.stream.personas.model import PersonaModel
>>> from intentstream.stream.report.html import render_html
>>> from intentstream.stream.report.markdown import render_markdown
>>> from intentstream.stream.report.model import build_report
>>> from intentstream.stream.settings import PersonaSettings
>>> from intentstream.stream.synth.segments import synthetic_segments
>>> model = PersonaModel(PersonaSettings.defaults(n_clusters=4))
>>> for seg in synthetic_segments(users=60, seed=2, days=3):
...     _ = model.learn_one(seg)
>>> rep = build_report(model, lang="zh", min_users=3)
>>> md = render_markdown(rep)
>>> md.splitlines()[0]
'# 基于业务驱动的用户画像与营销策略报告'
>>> all(section.lines for c in rep.clusters for section in c.strategies)
True
>>> "http" in render_html(rep)
False
"""
