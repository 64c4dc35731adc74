"""``python examples/msseg <command> [options]``: the same command line as the installed `msseg`.

Python puts this folder first on the module path, so the `msseg` package beside this file is the
one imported, installed or not.
"""

from msseg.commands.main import main

raise SystemExit(main())
