"""Only what pyproject.toml cannot say: the cffi builder of the native module."""
from setuptools import setup

setup(cffi_modules=["src/bricks/_native_build.py:ffibuilder"])
