"""`python -m dopt` runs the command line."""

from dopt.cli import main

raise SystemExit(main())
