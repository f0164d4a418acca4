"""Build hook: with ``CHURNGUARD_COMPILE=1`` the pure core's hot modules are compiled with
mypyc into C extensions (the image does this; ``make compiled`` for tests and benchmarks).

Without it the install is plain Python, as for development. The modules are listed under
``[tool.churnguard] compiled`` in pyproject.toml; docs/performance.md says why and how much.
"""

import os
import tomllib

from setuptools import setup

ext_modules = []
if os.environ.get("CHURNGUARD_COMPILE") == "1":
    from mypyc.build import mypycify

    with open("pyproject.toml", "rb") as f:
        compiled = tomllib.load(f)["tool"]["churnguard"]["compiled"]
    ext_modules = mypycify(compiled, opt_level="3")

setup(ext_modules=ext_modules)
