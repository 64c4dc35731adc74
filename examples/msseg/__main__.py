"""Entry point: ``python examples/msseg <command> [options]``; ``--help`` lists the commands."""

import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# `python examples/msseg` puts this folder first on sys.path, where its module names (cache,
# dataset, ...) could shadow installed ones; import the package from its parent instead.
if sys.path and Path(sys.path[0] or ".").resolve() == _PACKAGE:
    sys.path[0] = str(_PACKAGE.parent)
elif str(_PACKAGE.parent) not in sys.path:
    sys.path.insert(0, str(_PACKAGE.parent))

from msseg.cli import main  # noqa: E402

raise SystemExit(main())
