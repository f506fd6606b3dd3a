"""``python -m intentstream.stream.cli``: the ``intentstream`` command."""

import sys

from intentstream.stream.cli import main

sys.exit(main())
