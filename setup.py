"""Only the C extension: everything else about the package is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and ``kernels``
falls back to its pure-Python reference (see kernels/__init__.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "kernels._linediff",
            sources=["kernels/_linediff.c"],
            optional=True,
        ),
    ],
)
