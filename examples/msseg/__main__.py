"""``python examples/msseg <command> [options]``: the same command line as the installed `msseg`
(install the example first: ``pip install -e ./examples/msseg``; ``make`` does it)."""

from msseg.commands.main import main

raise SystemExit(main())
