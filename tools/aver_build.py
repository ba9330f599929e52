"""In-tree build backend: setuptools' own, except that torch is asked for only when the extension is built.

Building a wheel (or an editable install) compiles ``aver_fast._C`` against torch, so those builds require it;
building an sdist compiles nothing and must not download torch (nor ninja) (several GB with its CUDA wheels).
"""
from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every other hook is setuptools')

EXTENSION_BUILD = ["torch>=2.14", "ninja"]


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + EXTENSION_BUILD


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + EXTENSION_BUILD
