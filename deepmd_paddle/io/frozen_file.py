"""The frozen model as one file (``dpp freeze -o PATH`` writes exactly PATH), and the older
multi-file layout, read behind one interface.

One file: an uncompressed (stored) zip archive, written to a temporary name and renamed::

    deepmd_paddle_frozen.json      the description (``io.frozen``: type_map, rcut, sel, programs, ...),
                                   "files": sha256 of every other member, "checksum": its own sha256
    model.json, model.pdiparams    the programs of ``io.frozen.PROGRAMS`` (Paddle's file names
    model.nopbc.*, .lower.*, .desc.*   for a layer with several methods, prefix "model")
    model.safetensors              the model's weights and statistics (``EnergyModel.state_dict``):
                                   with the description's "model_def_script" they rebuild the model
                                   (``dpp convert`` to .dp, ``dpp compress``)

It is recognised by its content, whatever its name: a zip file whose first member, named at byte
30 of its first local header, is ``deepmd_paddle_frozen.json`` (``dpp freeze``'s default name is
``frozen_model.pb``, DeePMD-kit's; a TensorFlow GraphDef starts otherwise). Reading checks the
member names (only those above), that every member is stored uncompressed and within the file,
each member's sha256 and the description's checksum, and names the file and member at fault.
Nothing in the file is executed: JSON, safetensors and Paddle's program files only. Paddle reads
programs from files, so ``programs()`` writes them into a private temporary folder for the
duration of a load and removes it.

The older layout (``deepmd_paddle.frozen/1``): ``PREFIX.json``, ``.pdiparams``, the other
programs and ``PREFIX.meta`` with the sha256 of each program file by suffix. It still evaluates;
it carries no weights file, so it cannot be converted or compressed (refused by name).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile

from . import ckpt_names

FORMAT = "deepmd_paddle.frozen/2"        # one file
FORMAT_PREFIX = "deepmd_paddle.frozen/1"  # PREFIX.json + PREFIX.meta + ...
MANIFEST = "deepmd_paddle_frozen.json"
WEIGHTS = "model.safetensors"
STEM = "model"  # the programs' prefix inside the archive
PROGRAM_SUFFIXES = ("", ".nopbc", ".lower", ".desc")  # the order of io.frozen.PROGRAMS
META_SUFFIX = ".meta"  # older layout; not ".meta.json": jit.load reads every <prefix>.<name>.json as a program
MODEL_SUFFIXES = (META_SUFFIX, ".pdiparams", ".json")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ModelFileError(ValueError):
    """A path that is not a model this package can read."""


def program_members(stem: str = STEM) -> list:
    """The program files of a frozen model, ``<stem><suffix>.json/.pdiparams``."""
    return [stem + suffix + ext for suffix in PROGRAM_SUFFIXES for ext in (".json", ".pdiparams")]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta_checksum(meta: dict) -> str:
    """sha256 of the description (canonical JSON) without its own ``checksum`` and without
    ``custom_ops``, which DeepPot compares with the operators of the process on its own."""
    body = {k: v for k, v in meta.items() if k not in ("checksum", "custom_ops")}
    return sha256(json.dumps(body, sort_keys=True).encode())


# ----------------------------------------------------------------------------- one file
def is_frozen_file(path) -> bool:
    """Whether ``path`` is a one-file frozen model (by its first bytes, not its name)."""
    name = MANIFEST.encode()
    try:
        with open(path, "rb") as f:
            head = f.read(30 + len(name))
    except OSError:
        return False
    return head[:4] == b"PK\x03\x04" and head[30:] == name


def write_frozen_file(path: str, meta: dict, members: dict) -> None:
    """Write the archive at exactly ``path`` (temporary name, then renamed). ``members``: name ->
    bytes; ``meta`` gets their sha256 ("files") and its checksum."""
    from ..utils.files import atomic_output

    if os.path.isdir(path):
        raise IsADirectoryError(f"frozen model: {path} is a folder; give a file name (e.g. frozen_model.pb)")
    meta = dict(meta, format=FORMAT, files={name: sha256(data) for name, data in members.items()})
    meta["checksum"] = meta_checksum(meta)
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            z.writestr(zipfile.ZipInfo(MANIFEST, _ZIP_DATE), json.dumps(meta, indent=1))  # first: the signature
            for name, data in members.items():
                z.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data)
    return meta


def _damaged(path: str, what: str) -> ModelFileError:
    return ModelFileError(f"{path}: a deepmd_paddle frozen model, but {what}; the file is damaged (truncated, "
                          "or changed after `dpp freeze` wrote it): freeze the model again")


_CHUNK = 1 << 22


def _zip_digest(z: zipfile.ZipFile, name: str, out=None) -> str:
    """sha256 of member ``name``, read in chunks (zipfile checks its CRC-32 at the end); the bytes
    also go to the file object ``out`` when one is given. Nothing is kept in memory."""
    h = hashlib.sha256()
    with z.open(name) as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            if out is not None:
                out.write(chunk)
    return h.hexdigest()


def _open_zip(path: str):
    """The checked zip of a one-file frozen model and its member names."""
    size = os.path.getsize(path)
    z = zipfile.ZipFile(path)
    try:
        infos = z.infolist()
        names = [i.filename for i in infos]
        allowed = {MANIFEST, WEIGHTS, *program_members()}
        if not names or names[0] != MANIFEST or len(set(names)) != len(names) or set(names) - allowed:
            raise _damaged(path, f"its members are {names[:12]} (allowed: {sorted(allowed)}, "
                                 f"{MANIFEST} first, each once)")
        for i in infos:
            if i.compress_type != zipfile.ZIP_STORED or i.file_size != i.compress_size or i.file_size > size:
                raise _damaged(path, f"member {i.filename} is compressed or larger than the file")
    except BaseException:
        z.close()
        raise
    return z, names


def _zip_errors(path: str):
    """Context: zip and file errors named as damage of ``path``."""
    @contextlib.contextmanager
    def guard():
        try:
            yield
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, ValueError, NotImplementedError) as e:
            raise _damaged(path, f"its zip structure is unreadable ({e})") from None
        except (OSError, EOFError) as e:
            raise _damaged(path, f"it cannot be read ({e})") from None
    return guard()


def read_frozen_file(path: str) -> dict:
    """The description of the one-file frozen model at ``path``, every member checked against the
    sha256 it records (read in chunks: the members are not kept; ``FrozenFile`` reads them again,
    checked again, when they are needed)."""
    with _zip_errors(path):
        z, names = _open_zip(path)
        with z:
            text = z.read(MANIFEST)
            try:
                meta = json.loads(text.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise _damaged(path, f"its description {MANIFEST} is not JSON ({e})") from None
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
                raise ModelFileError(f"{path}: frozen-model format {got!r}, expected {FORMAT!r} (freeze the model "
                                     "again with this version)")
            if meta.get("checksum") != meta_checksum(meta):
                raise _damaged(path, f"its description {MANIFEST} does not match its checksum")
            files = meta.get("files") or {}
            members = [n for n in names if n != MANIFEST]
            missing = sorted(set(files) - set(members)) + sorted(set(program_members()) - set(files))
            if missing:
                raise _damaged(path, f"members {missing} are missing")
            changed = sorted(name for name in members if files.get(name) != _zip_digest(z, name))
            if changed:
                raise _damaged(path, f"members {changed} do not match the sha256 its description records")
    return meta


class FrozenFile:
    """A one-file frozen model, checked once when opened; its members are read from the file
    (and checked again) when they are needed, so none of them stays in memory."""

    def __init__(self, path: str):
        self.path = os.fspath(path)
        self.meta = read_frozen_file(self.path)

    def _extract(self, names: list, folder: str) -> None:
        """Write members ``names`` into ``folder``, each checked against its recorded sha256."""
        files = self.meta["files"]
        with _zip_errors(self.path):
            z, _ = _open_zip(self.path)
            with z:
                for name in names:
                    with open(os.path.join(folder, name), "wb") as out:
                        if _zip_digest(z, name, out) != files.get(name):
                            raise _damaged(self.path, f"member {name} changed since the file was opened")

    @contextlib.contextmanager
    def programs(self, names=None):
        """Context: a prefix whose ``<prefix><suffix>.json/.pdiparams`` files are the programs
        (those of the PROGRAMS suffixes ``names``, default all), in a private temporary folder
        (mode 0700) removed on exit."""
        wanted = program_members() if names is None else [STEM + s + e for s in names for e in (".json", ".pdiparams")]
        folder = tempfile.mkdtemp(prefix="deepmd_paddle_frozen_")
        try:
            self._extract(wanted, folder)
            yield os.path.join(folder, STEM)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def model(self):
        """The ``EnergyModel`` the programs were traced from (weights member + model_def_script)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from ..model import EnergyModel
        from .checkpoint import load_model_tensors

        if WEIGHTS not in self.meta.get("files", {}):
            raise ModelFileError(f"{self.path}: this frozen model carries no weights ({WEIGHTS}); freeze it again")
        folder = tempfile.mkdtemp(prefix="deepmd_paddle_frozen_")
        try:
            self._extract([WEIGHTS], folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        try:
            tensors = load_file(os.path.join(folder, WEIGHTS))
            model = EnergyModel.from_config(self.meta["model_def_script"])
        except (SafetensorError, KeyError, TypeError, ValueError) as e:
            raise _damaged(self.path, f"its weights or model_def_script do not rebuild a model ({e})") from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        load_model_tensors(model, {"model." + k: v for k, v in tensors.items()}, f"{self.path}:{WEIGHTS}")
        if self.meta.get("min_nbor_dist") is not None:
            model.min_nbor_dist = float(self.meta["min_nbor_dist"])
        return model.eval()


# ----------------------------------------------------------------------------- older layout
def frozen_prefix(path) -> str | None:
    """The prefix of a multi-file frozen model named by ``path`` (prefix, ``.json``,
    ``.pdiparams`` or ``.meta``), or None when no ``<prefix>.meta`` is there or it belongs to a
    checkpoint's ``.index``/``.meta``/``.data-00000-of-00001`` (``ckpt_names``)."""
    path = os.fspath(path)
    for suffix in MODEL_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    if ckpt_names.present(path):  # a checkpoint under DeePMD-kit's names: <prefix>.meta is its description
        return None
    return path if os.path.isfile(path + META_SUFFIX) else None


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return sha256(f.read())


class FrozenPrefix:
    """A frozen model of the older multi-file layout at ``prefix``, checked once."""

    def __init__(self, prefix: str):
        self.path = prefix
        meta_path = prefix + META_SUFFIX
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise ModelFileError(f"{meta_path}: not a readable frozen-model description ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_PREFIX:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ModelFileError(f"{meta_path}: format {got!r}, expected {FORMAT_PREFIX!r} (freeze the model again)")
        files = program_members(prefix)
        missing = [p for p in files if not os.path.isfile(p)]
        if missing:
            raise ModelFileError(f"frozen model {prefix!r} is incomplete: missing {missing}")
        if "checksum" in meta and meta["checksum"] != meta_checksum(meta):
            raise ModelFileError(f"{meta_path}: the description was changed after `dpp freeze` wrote it (its checksum "
                                 "does not match); the programs were traced for the original values: freeze again")
        changed = [p for p in files if "files" in meta and meta["files"].get(p[len(prefix):]) != _file_digest(p)]
        if changed:
            raise ModelFileError(f"frozen model {prefix!r}: {[os.path.basename(p) for p in changed]} are not the files "
                                 f"its {META_SUFFIX} describes (a freeze interrupted while it replaced them, or "
                                 "files copied from another model); freeze the model again")
        self.meta = meta

    @contextlib.contextmanager
    def programs(self, names=None):
        """Context: the programs linked into a private folder (jit.load would also read every
        ``<prefix>*.<name>.json`` next to the model: another model whose name starts with this one's)."""
        folder = tempfile.mkdtemp(prefix="deepmd_paddle_frozen_")
        try:
            suffixes = PROGRAM_SUFFIXES if names is None else names
            for suffix in suffixes:
                for ext in (".json", ".pdiparams"):
                    os.symlink(os.path.abspath(self.path + suffix + ext), os.path.join(folder, STEM + suffix + ext))
            yield os.path.join(folder, STEM)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def model(self):
        raise ModelFileError(f"{self.path}: a frozen model of the older multi-file layout ({FORMAT_PREFIX}) holds "
                             "programs only, no weights to rebuild the model from; use the checkpoint or .dp file it "
                             "was frozen from, or freeze that again (one file, with its weights)")


def open_frozen(path) -> FrozenFile | FrozenPrefix | None:
    """The frozen model at ``path`` (one file, by content; or the older prefix layout), or None."""
    path = os.fspath(path)
    if os.path.isfile(path) and is_frozen_file(path):
        return FrozenFile(path)
    prefix = frozen_prefix(path)
    return FrozenPrefix(prefix) if prefix is not None else None
