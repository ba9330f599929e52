"""Build of aver_fast and its torch C++ extension ``aver_fast._C``.

The CPU kernels (``csrc/*.cpp``, ``csrc/cpu/*.cpp``) are always built. CUDA kernels (``csrc/cuda/*.cu``) are added
when ``torch.utils.cpp_extension.CUDA_HOME`` is found and ``AVER_FAST_BUILD_CUDA`` is not ``0``;
``AVER_FAST_BUILD_CUDA=1`` without a CUDA toolkit is an error. ``MAX_JOBS`` limits parallel compilation.
"""
import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def extensions():
    from torch.utils import cpp_extension

    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    if not cpu_sources:
        return [], {}
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
                                          extra_compile_args={"cxx": cxx, "nvcc": ["-O3",
 ]}, **kwargs)
    else:
        ext = cpp_extension.CppExtension(sources=cpu_sources, extra_compile_args={"cxx": cxx}, **kwargs)
    return [ext], {"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
