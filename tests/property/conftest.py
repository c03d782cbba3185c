"""Hypothesis settings for the property tests: 200 examples each, no per-example deadline.

`HYPOTHESIS_PROFILE=dev` runs fewer examples while working on a property.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
