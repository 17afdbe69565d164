"""``python -m mcpctl``."""

from mcpctl.cli.main import main

raise SystemExit(main())
