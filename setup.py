"""Only the C extension: everything else about the package is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and ``kernels``
falls back to its pure-Python reference (see kernels/__init__.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "metre.kernels._linediff",
            sources=["kernels/_linediff.c"],
            optional=True,
        ),
        Extension(
            "metre.kernels._treediff",
            sources=["kernels/_treediff.c"],
            optional=True,
        ),
        Extension(
            "metre.kernels._packfile",
            sources=["kernels/_packfile.c"],
            libraries=["z"],  # zlib's headers and library (zlib1g-dev); optional like the rest
            optional=True,
        ),
        Extension(
            "metre.kernels._ancestry",
            sources=["kernels/_ancestry.c"],
            optional=True,
        ),
        Extension(
            "metre.kernels._codelines",
            sources=["kernels/_codelines.c"],
            optional=True,
        ),
        Extension(
            "metre.kernels._authorship",
            sources=["kernels/_authorship.c"],
            # No fused multiply-add: results stay bit-identical to the pure-Python twin.
            extra_compile_args=["-ffp-contract=off"],
            optional=True,
        ),
    ],
)
