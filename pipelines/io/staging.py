"""Output directories that are complete or absent: staged under a temporary sibling, then renamed."""

import contextlib
import glob
import os
import shutil
import socket
import uuid

from apache_beam.io.filesystems import FileSystems

from pipelines.errors import UsageError
from pipelines.io import files

__all__ = [
    "RECORDS",
    "TEMP",
    "check_replaceable",
    "is_local",
    "publish",
    "remove_abandoned_stagings",
    "remove_tree",
    "staged_directory",
    "temp_dir",
]

TEMP = "tmp"  # a job's scratch space inside its staging directory: deleted, never published
OWNER = "owner"  # in TEMP: "<host> <pid>" of the process writing the staging directory
# the record every command writes into its output (run, labels, dedup, train, export-tfx): what may be replaced
RECORDS = ("run.json", "agreement.json", "dedup.json", "metrics.json", "export_tfx.json")


def temp_dir(staging: str, name: str) -> str:
    """A scratch directory ``<staging>/tmp/<name>`` (deleted before the staging is published)."""
    return files.join(staging, TEMP, name)


is_local = files.is_local


remove_tree = files.remove_tree  # kept here too: the staging code and its callers use it by this name


def check_replaceable(final: str) -> None:
    """Raises UsageError unless ``final`` is absent, an empty directory or a Skewless output.

    Publishing replaces ``final`` whole, so a directory holding anything but an earlier output (a
    mistyped ``--output data``, a home directory) is refused before any work starts, never deleted.
    A Skewless output is recognised by its command's record (``RECORDS``).
    """
    final = final.rstrip("/")
    refusal = (
        f"--output {final} exists and is not a Skewless output (it has none of {', '.join(RECORDS)}): "
        "refusing to replace it; choose another directory or remove it first"
    )
    if is_local(final):
        if not os.path.lexists(final):
            return
        if not os.path.isdir(final) or os.path.islink(final):
            raise UsageError(f"--output {final} is not a directory: refusing to replace it; choose another path")
        names = set(os.listdir(final))
        if names and not names & set(RECORDS):
            raise UsageError(refusal)
        return
    if any(FileSystems.exists(f"{final}/{record}") for record in RECORDS):
        return
    if FileSystems.exists(final) or FileSystems.match([f"{final}/**"], limits=[1])[0].metadata_list:
        raise UsageError(refusal)


def publish(staging: str, final: str) -> None:
    """Moves a finished staging directory to ``final``, replacing what was there.

    Locally the new tree appears by one rename; on object stores (``gs://``) files are renamed
    one by one, which is the best such a store offers.
    """
    if is_local(final):
        old = f"{final}.old-{uuid.uuid4().hex[:8]}"
        if os.path.exists(final):
            os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old, ignore_errors=True)
        return
    remove_tree(final)
    sources = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
    FileSystems.rename(sources, [final.rstrip("/") + s[len(staging.rstrip("/")) :] for s in sources])
    remove_tree(staging)


def remove_abandoned_stagings(final: str) -> list[str]:
    """Deletes the local staging directories of ``final`` whose process is gone; returns them.

    A job stopped by a signal removes its staging directory on the way out, but one killed outright
    (SIGKILL, the kernel's out-of-memory killer, a power cut) cannot: its ``<final>.tmp-*`` sibling,
    up to the size of the data, would stay. Each staging directory names its owner (host and
    process id, in ``tmp/owner``), so the next job writing ``final`` deletes those whose owner ran
    on this host and no longer runs. A staging directory of a live job, of another host (a shared
    disk) or without an owner file is left alone.
    """
    removed = []
    for path in sorted(glob.glob(glob.escape(final) + ".tmp-*")):
        try:
            with open(os.path.join(path, TEMP, OWNER)) as owner:
                host, pid = owner.read().split()
        except (OSError, ValueError):
            continue
        if host == socket.gethostname() and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def staged_directory(final: str):
    """Yields a temporary sibling of ``final`` to write into; publishes it when the block succeeds.

    On an exception the staging directory is deleted and ``final`` is left as it was. ``final`` must
    be absent, empty or an earlier Skewless output (:func:`check_replaceable`).

    Args:
        final: The output directory the user asked for.

    Yields:
        The staging directory path (created). Its ``tmp/`` (:func:`temp_dir`) is deleted before
        the rest is published. Staging directories of ``final`` left by killed jobs are deleted
        first (:func:`remove_abandoned_stagings`).
    """
    final = final.rstrip("/")
    check_replaceable(final)
    if is_local(final):
        final = os.path.abspath(final)
        os.makedirs(os.path.dirname(final), exist_ok=True)
    staging = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    if is_local(final):
        remove_abandoned_stagings(final)
        os.makedirs(os.path.join(staging, TEMP))
        with open(os.path.join(staging, TEMP, OWNER), "w") as owner:
            owner.write(f"{socket.gethostname()} {os.getpid()}\n")
    else:
        FileSystems.mkdirs(staging)
    try:
        yield staging
    except BaseException:
        remove_tree(staging)
        raise
    remove_tree(files.join(staging, TEMP))
    publish(staging, final)
