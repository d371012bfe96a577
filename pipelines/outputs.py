"""Output directories that are complete or absent: staged under a temporary sibling, then renamed."""

import contextlib
import os
import shutil
import uuid

from apache_beam.io.filesystems import FileSystems

__all__ = ["TEMP", "is_local", "publish", "remove_tree", "staged_directory", "temp_dir"]

TEMP = "tmp"  # a job's scratch space inside its staging directory: deleted, never published


def temp_dir(staging: str, name: str) -> str:
    """A scratch directory ``<staging>/tmp/<name>`` (deleted before the staging is published)."""
    return os.path.join(staging, TEMP, name)


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local filesystem (no ``scheme://``)."""
    return "://" not in path


def remove_tree(path: str) -> None:
    """Deletes a directory tree (or a file), local or remote, if it exists.

    On an object store a "directory" is only a name prefix (``exists`` is false for it), so every
    object under ``<path>/`` is matched and deleted.
    """
    if is_local(path):
        if os.path.isfile(path):
            os.remove(path)
        shutil.rmtree(path, ignore_errors=True)
        return
    targets = [metadata.path for metadata in FileSystems.match([path.rstrip("/") + "/**"])[0].metadata_list]
    if FileSystems.exists(path):
        targets.append(path)
    if targets:
        FileSystems.delete(targets)


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


@contextlib.contextmanager
def staged_directory(final: str):
    """Yields a temporary sibling of ``final`` to write into; publishes it when the block succeeds.

    On an exception the staging directory is deleted and ``final`` is left as it was.

    Args:
        final: The output directory the user asked for.

    Yields:
        The staging directory path (created). Its ``tmp/`` (:func:`temp_dir`) is deleted before
        the rest is published.
    """
    final = final.rstrip("/")
    if is_local(final):
        final = os.path.abspath(final)
        os.makedirs(os.path.dirname(final), exist_ok=True)
    staging = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    FileSystems.mkdirs(staging) if not is_local(staging) else os.makedirs(staging)
    try:
        yield staging
    except BaseException:
        remove_tree(staging)
        raise
    remove_tree(os.path.join(staging, TEMP))
    publish(staging, final)
