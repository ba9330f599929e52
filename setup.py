"""Build of aver_fast and its torch C++ extension ``aver_fast._C``.

Packages: every ``aver_fast.*`` package, found automatically, and ``kernels/`` (kept at the top level of the
repository) installed as ``aver_fast.kernels``.

The CPU kernels (``csrc/*.cpp``, ``csrc/cpu/*.cpp``) are always built. CUDA kernels (``csrc/cuda/*.cu``) are added
when ``torch.utils.cpp_extension.CUDA_HOME`` is found and ``AVER_FAST_BUILD_CUDA`` is not ``0``;
``AVER_FAST_BUILD_CUDA=1`` without a CUDA toolkit is an error. ``MAX_JOBS`` limits parallel compilation.
torch is imported only when the extension is built: an sdist needs no torch. Beside the extension the build writes
``aver_fast/_C_build.json`` (the torch it was built against), which ``aver_fast.ops._ext`` checks before loading it.
"""
import glob
import json
import os
import sys

from setuptools import find_namespace_packages, find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_INFO = "_C_build.json"  # read by aver_fast/ops/_ext.py
BUILDS_EXTENSION = {"build", "build_ext", "bdist_wheel", "bdist", "bdist_egg", "editable_wheel", "develop", "install"}


def packages() -> tuple[list[str], dict[str, str]]:
    found = find_packages(include=["aver_fast", "aver_fast.*"])
    kernels = ["aver_fast.kernels"] + [f"aver_fast.kernels.{p}" for p in find_namespace_packages("kernels")
                                       if "__pycache__" not in p]
    return found + kernels, {"aver_fast.kernels": "kernels"}


def extensions():
    if not BUILDS_EXTENSION & set(sys.argv[1:]):  # sdist, egg_info, dist_info, ...: metadata only, no torch
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        sys.exit("building aver_fast's C++ extension needs torch: install torch first, then "
                 "`pip install --no-build-isolation .` (see README, Install)")

    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    flag = os.environ.get("AVER_FAST_BUILD_CUDA", "auto").strip().lower()
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    with_cuda = False
    if flag in ("1", "true", "yes"):
        if cpp_extension.CUDA_HOME is None:
            sys.exit("AVER_FAST_BUILD_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME (e.g. "
                     "CUDA_HOME=/usr/local/cuda) or build without CUDA (AVER_FAST_BUILD_CUDA=0).")
        with_cuda = True
    elif flag not in ("0", "false", "no"):
        with_cuda = cpp_extension.CUDA_HOME is not None and bool(cuda_sources)
    cxx = ["-O3", "-fopenmp"] if sys.platform != "win32" else ["/O2", "/openmp"]
    define = [("AVER_FAST_WITH_CUDA", "1")] if with_cuda else []
    kwargs = dict(name="aver_fast._C", include_dirs=[os.path.join(ROOT, "csrc")], define_macros=define,
                  extra_link_args=["-fopenmp"] if sys.platform != "win32" else [])
    if with_cuda:
        ext = cpp_extension.CUDAExtension(sources=cpu_sources + cuda_sources,
                                          extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]}, **kwargs)
    else:
        ext = cpp_extension.CppExtension(sources=cpu_sources, extra_compile_args={"cxx": cxx}, **kwargs)

    class BuildExtension(cpp_extension.BuildExtension):
        """torch's BuildExtension (ninja), then the build-info file beside the built extension."""

        def run(self):
            super().run()
            path = os.path.join(os.path.dirname(self.get_ext_fullpath("aver_fast._C")), BUILD_INFO)
            with open(path, "w") as f:
                json.dump({"torch": torch.__version__, "cuda": torch.version.cuda, "with_cuda": with_cuda}, f)

    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()
found, package_dir = packages()
setup(packages=found, package_dir=package_dir, ext_modules=ext_modules, cmdclass=cmdclass)
