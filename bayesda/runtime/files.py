"""Safe outputs: bayesda never leaves a partial file and never writes over what is not its own.

Four rules, one helper each:

* **Ours or nothing.** A run directory carries a marker file (:data:`MARKER`, JSON naming
  its kind); a reanalysis store is marked by the ``bayesda_signature`` attribute in its
  ``zarr.json`` (zarr warns about foreign files in a store). :func:`check_target`
  refuses a non-empty directory without that marker, even with ``--force``; ``--force``
  replaces only a bayesda output of the same kind.
* **One writer.** :func:`lock` takes an exclusive lock on a sibling lock file
  (``.NAME.lock``, holding the writer's pid and host) for as long as a run or store is
  written, so two processes writing one output cannot both win: the second gets
  :class:`LockedError` naming the first. The lock is a kernel ``flock``, so a killed
  writer's lock is released with its process (no stale lock can block a rerun); the pid
  in the file is only for the message.
* **Atomic replace.** :func:`atomic_write` and :func:`replace_dir` write to a temporary
  sibling, fsync, and rename it into place: a crash or a full disk leaves the old output
  (or none), never a torn one.
* **Never onto an input, never into another output.** :func:`check_file_target` decides
  whether a command may write one file: never the same file as one of the command's inputs
  (after symlinks, and by inode for hard links), never a file inside a bayesda run, store
  or model directory other than the one file the command regenerates, never anything but
  a regular file, and never an existing file without ``--force``.
  :func:`check_inputs_outside` keeps an output directory from holding the command's inputs.
  A model directory is bayesda's only if its ``model.json`` says so
  (:func:`model_dir_problem`: a marker and a hash list that covers every file).
* **Own temporary files only.** Temporary names carry :data:`TMP_TAG`, the writer's pid
  and a random token (:func:`temp_path`); :func:`clean_temps` removes only those whose
  process is dead, never another live process's files or anything else.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "MARKER",
    "TMP_TAG",
    "LockedError",
    "OutputError",
    "atomic_write",
    "check_file_target",
    "check_inputs_outside",
    "check_target",
    "clean_temps",
    "lock",
    "make_parent",
    "marker_kind",
    "model_dir_problem",
    "pid_alive",
    "replace_dir",
    "temp_path",
    "write_marker",
    "writing",
]

MARKER = ".bayesda"
"""Name of the marker file inside every directory bayesda creates as an output."""
TMP_TAG = "bayesda-tmp"
"""Tag in the name of every temporary file or directory bayesda writes."""
KINDS = ("run", "store")
MODEL_CARD = "model.json"
"""The card of a model directory (:mod:`bayesda.prior.checkpoint`)."""
MODEL_MARKER = {"written_by": "bayesda"}
"""The entry of ``model.json`` that says bayesda wrote the directory."""
_TMP_RE = re.compile(rf"^\.(?P<name>.+)\.{TMP_TAG}-(?P<host>[^-]*)-(?P<pid>\d+)-[0-9a-f]+$")


class OutputError(ValueError):
    """An output cannot be written safely (not ours, exists, or the write failed)."""


class LockedError(OutputError):
    """Another live process is writing the same output."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:40]


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary sibling of ``path``: ``.NAME.bayesda-tmp-HOST-PID-TOKEN``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{TMP_TAG}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}")


def clean_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporary siblings of ``path`` left by dead bayesda processes on this host.

    Only names made by :func:`temp_path` for this ``path`` are considered; those of a live
    process (including this one) or of another host are kept.

    Returns:
      The paths removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for p in path.parent.iterdir():
        m = _TMP_RE.match(p.name)
        if not m or m["name"] != path.name or m["host"] != _host():
            continue
        if int(m["pid"]) == os.getpid() or pid_alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def write_marker(directory: str | os.PathLike, kind: str) -> Path:
    """Write the marker that says ``directory`` is a bayesda output of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
    from bayesda._version import __version__

    info = {
        "kind": kind,
        "bayesda_version": __version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "note": "this directory was written by bayesda; bayesda --force may replace it",
    }
    path = Path(directory) / MARKER
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


def marker_kind(path: str | os.PathLike) -> str | None:
    """The kind of bayesda output ``path`` is (``"run"``, ``"store"``), or None.

    Outputs of bayesda versions before the marker are recognised by their content: a run
    by a ``run.json`` with a ``bayesda_version``, a store by ``zarr.json`` attributes with
    ``bayesda_signature``.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    try:
        info = json.loads((path / MARKER).read_text())
        return info.get("kind") if info.get("kind") in KINDS else None
    except (OSError, ValueError, AttributeError):
        pass
    try:
        if "bayesda_version" in json.loads((path / "run.json").read_text()):
            return "run"
    except (OSError, ValueError, TypeError):
        pass
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        if "bayesda_signature" in attrs:
            return "store"
    except (OSError, ValueError, AttributeError):
        pass
    return None


def check_target(
    path: str | os.PathLike, kind: str, *, force: bool = False, resume: bool = False
) -> str:
    """Decide what writing a ``kind`` output at ``path`` may do.

    Args:
      path: the output directory.
      kind: ``"run"`` or ``"store"``.
      force: replace an existing output of the same kind.
      resume: an existing output of the same kind is resumed (stores).

    Returns:
      ``"new"`` (absent or an empty directory), ``"resume"`` or ``"replace"``.

    Raises:
      OutputError: ``path`` is a file; a non-empty directory that is not a bayesda
        ``kind`` (refused even with ``force``); or an existing output without ``force``.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return "new"
    if path.is_symlink():
        raise OutputError(
            f"{path} is a symbolic link (to {os.path.realpath(path)}); bayesda writes outputs "
            "only where the link does not stand in the way: give the real path as --out"
        )
    if not path.is_dir():
        raise OutputError(f"{path} exists and is not a directory; choose another --out")
    if not any(path.iterdir()):
        return "new"
    found = marker_kind(path)
    if found is None and kind == "store" and (path / "zarr.json").is_file():
        try:
            json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError) as err:
            raise OutputError(
                f"reanalysis store {path} is damaged: its zarr.json cannot be read "
                f"({type(err).__name__}); move it aside and rerun to start afresh, or use "
                "another --out"
            ) from err
    if found == kind:
        if resume:
            return "resume"
        if force:
            return "replace"
        raise OutputError(
            f"{kind} directory {path} exists and is not empty (use --force to replace it)"
        )
    if found:
        raise OutputError(
            f"{path} is a bayesda {found}, not a {kind}; bayesda never replaces one kind of "
            "output by another, even with --force: choose another --out"
        )
    raise OutputError(
        f"{path} exists and is not empty, and is not a bayesda {kind} (no {MARKER} marker); "
        "bayesda never writes over files it did not create, even with --force: choose "
        "another --out or remove it yourself"
    )


def make_parent(path: str | os.PathLike) -> Path:
    """Create the parent directory of ``path``; a file in the way is named in the error."""
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(
                f"cannot create {path}: {parent} is a file, not a directory; choose another path"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive writer's lock of the output ``path`` (a ``.NAME.lock`` sibling).

    Raises:
      LockedError: another process holds it (the message names its pid and host).
    """
    path = Path(path)
    make_parent(path)
    lp = _lock_path(path)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                holder = {}
            os.close(fd)
            raise LockedError(
                f"{path} is being written by another bayesda process (pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, lock {lp}); wait for "
                "it to finish or choose another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder before us may have unlinked the file after we opened it: then our lock
        # is on a dead inode and a third process could lock a new file. Retry in that case.
        try:
            same = os.stat(lp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": _host()}).encode())
        yield lp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lp)
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success fsync it and rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.

    Example::

        with atomic_write("maps.png") as tmp:
            fig.savefig(tmp, format="png")
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected a file path", str(path))
    make_parent(path)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_dir(tmp: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Rename the finished directory ``tmp`` to ``out``, replacing an old ``out`` if any.

    The caller has checked (:func:`check_target`) that an existing ``out`` may be replaced
    and holds its :func:`lock`. The old directory is moved aside to a temporary name first
    and deleted only after the new one is in place.
    """
    tmp, out = Path(tmp), Path(out)
    for f in tmp.rglob("*"):
        if f.is_file():
            with contextlib.suppress(OSError), open(f, "rb") as fh:
                os.fsync(fh.fileno())
    if out.exists():
        old = temp_path(out)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
            os.replace(tmp, out)
        else:
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    _fsync_dir(out.parent)
    return out


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a failure while writing ``path`` into an :class:`OutputError` naming it.

    netCDF and HDF5 report a full disk or a lost file as ``RuntimeError: NetCDF: HDF
    error``; this names the file and the likely causes.
    """
    try:
        yield
    except OSError as err:
        raise OutputError(f"cannot write {path}: {_os_reason(err)}") from err
    except RuntimeError as err:
        raise OutputError(
            f"cannot write {path}: {err} (the disk may be full or the directory not "
            "writable; nothing was left behind)"
        ) from err


_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and rerun",
    errno.EDQUOT: "the disk quota is exceeded; free some space and rerun",
    errno.EACCES: "permission denied; choose a path you can write, or fix its permissions",
    errno.EPERM: "operation not permitted; choose another path",
    errno.EROFS: "the file system is read-only; choose another path",
    errno.EISDIR: "it is a directory, but a file is needed",
    errno.ENOTDIR: "a part of the path is a file, but a directory is needed",
    errno.ENOENT: "no such file or directory",
    errno.EEXIST: "it exists already",
}


def _os_reason(err: OSError) -> str:
    hint = _HINTS.get(err.errno or -1)
    text = err.strerror or str(err)
    return f"{text} ({hint})" if hint and hint != text.lower() else text


def describe_os_error(err: OSError) -> str:
    """One line for an :class:`OSError`: the file(s) it names, what went wrong, the fix."""
    files = " -> ".join(str(f) for f in (err.filename, err.filename2) if f)
    return f"{files}: {_os_reason(err)}" if files else _os_reason(err)


def model_dir_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is not a bayesda model directory that bayesda may replace; None if it is.

    A model directory is bayesda's when its ``model.json`` says so: the marker
    :data:`MODEL_MARKER` (cards written before the marker: a ``format_version`` and the
    ``bayesda`` entry of ``versions``) and a hash list (``files``, with ``params.npz``) that
    names every other file in the directory, so that replacing it loses nothing that bayesda
    did not write.
    """
    path = Path(path)
    card_path = path / MODEL_CARD
    if not path.is_dir() or path.is_symlink():
        return f"{path} is not a directory"
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        return f"{path} has no {MODEL_CARD}"
    except (OSError, ValueError) as err:
        return f"its {MODEL_CARD} cannot be read as JSON ({type(err).__name__})"
    if not isinstance(card, dict):
        return f"its {MODEL_CARD} is not a JSON object"
    versions = card.get("versions")
    marked = all(card.get(k) == v for k, v in MODEL_MARKER.items()) or (
        isinstance(card.get("format_version"), int)
        and isinstance(versions, dict)
        and "bayesda" in versions
    )
    if not marked:
        return f"its {MODEL_CARD} does not say bayesda wrote it (no 'written_by': 'bayesda')"
    listed = card.get("files")
    if not isinstance(listed, dict) or "params.npz" not in listed:
        return f"its {MODEL_CARD} has no hash list of the model's files"
    unlisted = sorted(
        p.name for p in path.iterdir() if p.name != MODEL_CARD and p.name not in listed
    )
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (" ..." if len(unlisted) > 5 else "")
        return f"it holds files its {MODEL_CARD} does not list ({shown})"
    return None


def _output_kind(directory: Path) -> str | None:
    """``"run"``, ``"store"`` or ``"model"`` when ``directory`` is a bayesda output."""
    kind = marker_kind(directory)
    if kind is None and (directory / MODEL_CARD).is_file() and model_dir_problem(directory) is None:
        kind = "model"
    return kind


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_file_target(
    path: str | os.PathLike,
    *,
    inputs=(),
    force: bool = False,
    regenerates: str | os.PathLike | None = None,
    option: str = "--out",
) -> Path:
    """Decide whether a command may write the file ``path``; raise if it may not.

    Args:
      path: the file the command is to write.
      inputs: paths the command reads (None entries are ignored).
      force: an existing ordinary file may be replaced.
      regenerates: the one file inside a bayesda output the command owns and may always
        replace (``RUN/maps.png`` for ``plot RUN``).
      option: the option that named ``path``, for the messages.

    Returns:
      ``path``.

    Raises:
      OutputError: ``path`` is a directory, not a regular file, one of ``inputs`` (refused
        even with ``force``), inside a bayesda run, store or model directory (even with
        ``force``), or an existing file without ``force``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a directory, but a file is needed")
    for inp in inputs:
        if inp is not None and (path.exists() or path.is_symlink()) and _same_file(path, Path(inp)):
            raise OutputError(
                f"{option} {path} is an input of this command ({inp}); writing it would "
                "destroy it, even with --force: choose another path"
            )
    if regenerates is not None and _same_file(path, Path(regenerates)):
        return path
    real = Path(os.path.realpath(path))
    for parent in real.parents:
        kind = _output_kind(parent)
        if kind is not None:
            raise OutputError(
                f"{option} {path} is inside the bayesda {kind} {parent}; bayesda never "
                f"writes other files into a {kind}, even with --force: choose a path outside it"
            )
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise OutputError(
                f"{option} {path} exists and is not a regular file; choose another path"
            )
        if not force:
            raise OutputError(f"{path} exists; pass --force to replace it, or choose another path")
    return path


def check_inputs_outside(out: str | os.PathLike, inputs, *, option: str = "--out") -> None:
    """Refuse an output directory ``out`` that holds (or is) one of the command's inputs.

    Raises:
      OutputError: an input lies inside ``out`` (writing ``out`` would replace it).
    """
    real_out = Path(os.path.realpath(out))
    for inp in inputs:
        if inp is None:
            continue
        real = Path(os.path.realpath(inp))
        if real == real_out or real_out in real.parents:
            raise OutputError(
                f"{option} {out} holds {inp}, an input of this command; writing {out} would "
                "replace it, even with --force: choose another path, or move the input out"
            )
