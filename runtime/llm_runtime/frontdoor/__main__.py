"""`python -m llm_runtime.frontdoor`: the same as `llm-frontdoor`."""

from __future__ import annotations

import sys

from llm_runtime.frontdoor.main import main

sys.exit(main())
