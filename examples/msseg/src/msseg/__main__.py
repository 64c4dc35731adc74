"""``python -m msseg <command> [options]`` (and ``torchrun ... -m msseg train ...``)."""

from msseg.commands.main import main

raise SystemExit(main())
