"""Human tables (stream/cli/tables.py): rich on a terminal, the plain fixed-width bytes
anywhere else (what files, pipes, CI logs and the tests of every command read)."""

from __future__ import annotations

import io

from intentstream.stream.cli import tables
from intentstream.stream.cli.tables import Table

TABLE = Table(("trigger", "status", "count"), [("cart_abandoned", "sent", "12"), (), ("churn_risk", "not enough data (n=3)")],
              right=(2,), sep="  ", rstrip=True, title="decisions")  # fmt: skip


def test_plain_off_a_terminal_is_fixed_width_text():
    out = io.StringIO()
    tables.write(["head", TABLE], out)
    assert out.getvalue() == (
        "head\ndecisions\n"
        "trigger         status  count\n"
        "cart_abandoned  sent       12\n"
        "\n"
        "churn_risk      not enough data (n=3)\n"  # a short row's note runs past its column
    )


def test_rich_on_a_terminal_draws_the_same_cells():
    out = io.StringIO()
    tables.write(["head", TABLE], out, tty=True)
    text = out.getvalue()
    assert "\x1b[" in text and "─" in text  # rich's styles and rule under the header
    for cell in ("head", "decisions", "cart_abandoned", "12", "churn_risk", "not enough data (n=3)"):
        assert cell in text
