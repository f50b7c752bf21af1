"""Packaging that pyproject.toml cannot express (everything else is there).

The top-level `scenarios/` folder, where users look, is also the package `harness.scenarios`
(package data: its TOML files), so the built-in scenarios are found by name through
importlib.resources in an editable and in a regular install alike, without a second copy.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["harness", "harness.*", "mock_orders_api", "mock_orders_api.*"],
                                     exclude=["*.__pycache__"]) + ["harness.scenarios"],
    package_dir={"harness.scenarios": "scenarios"},
    # The Node.js reference connector ships beside the Python one (cross-language tests).
    package_data={"harness.scenarios": ["*.toml"], "harness.connectors.node": ["*.mjs"]},
)
