# Everything is declared in setup.cfg; this shim exists for tools that still call setup.py.
from setuptools import setup

setup()
