"""`python -m llm_runtime ...` is `llm-runtime ...` (what the container image runs)."""

import sys

from llm_runtime import cli

sys.exit(cli.main())
