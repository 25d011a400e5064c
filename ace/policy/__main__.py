"""``python -m ace.policy simulate [--seed S --seeds N --rooms R --hours H --out DIR --json]``."""

from ace.policy.cli import main

raise SystemExit(main())
