"""Input files: the format a path holds, patterns expanded, files opened decompressed (and
re-encoded to UTF-8), and the CSV format a job reads."""

import codecs
import contextlib
import dataclasses
import gzip
from collections.abc import Iterator, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import READ_BREAKS, UsageError
from pipelines.formats import csv_records
from pipelines.io import files

__all__ = [
    "CSV",
    "DEFAULT_CSV_FORMAT",
    "PARQUET",
    "TAB_SUFFIXES",
    "TFRECORD",
    "CsvFormat",
    "delimiter_of",
    "expand_patterns",
    "input_format_of",
    "open_csv",
    "open_input",
    "reencoded",
]

CSV, PARQUET, TFRECORD = "csv", "parquet", "tfrecord"
_SUFFIXES = {
    ".csv": CSV,
    ".csv.gz": CSV,
    ".txt": CSV,
    ".tsv": CSV,
    ".tsv.gz": CSV,
    ".parquet": PARQUET,
    ".pq": PARQUET,
    ".tfrecord": TFRECORD,
    ".tfrecord.gz": TFRECORD,
    ".tfrecords": TFRECORD,
    ".tfrecords.gz": TFRECORD,
}
TAB_SUFFIXES = (".tsv", ".tsv.gz")  # CSV files whose fields are tab-separated unless told otherwise


def input_format_of(path: str) -> str:
    """The input format of a file by its name (``csv``, ``parquet`` or ``tfrecord``).

    Raises:
        UsageError: For an unknown suffix.
    """
    lowered = path.lower()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix):
            return _SUFFIXES[suffix]
    raise UsageError(f"cannot tell the format of {path}: name it *.csv, *.parquet or *.tfrecord[.gz]")


def expand_patterns(patterns: Sequence[str]) -> list[tuple[str, int]]:
    """Expands file patterns into ``(path, size)`` pairs, sorted by path, each file once.

    A local pattern is made absolute first: Beam's local file system matches nothing for a bare
    relative glob such as ``*.csv``, and ``a.csv`` and ``./a.csv`` are then one file, not two.

    A pattern naming a directory (local, or a ``gs://`` prefix without glob characters) stands for
    the files under it, as Spark and Hadoop write a dataset (``trips.parquet/part-*.parquet``):
    their bookkeeping files, whose names start with ``_`` or ``.`` (``_SUCCESS``, ``.crc``), are
    left out.

    Raises:
        UsageError: When a pattern matches no file.
    """
    found = {}
    for pattern in patterns:
        if FileSystems.get_scheme(pattern) is None:
            pattern = files.absolute(pattern)
        matches = _match(pattern)
        if _names_a_directory(pattern, matches):
            matches = [m for m in _match(pattern.rstrip("/") + "/**") if not _is_bookkeeping(m.path)]
        if not matches:
            raise UsageError(f"no input file matches {pattern}")
        for metadata in matches:
            found[metadata.path] = metadata.size_in_bytes
    return sorted(found.items())


def _match(pattern: str) -> list:
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except Exception as error:  # noqa: BLE001 - filesystems raise their own error types
        raise UsageError(f"cannot read {pattern}: {str(error).splitlines()[0]}") from None


def _names_a_directory(pattern: str, matches: list) -> bool:
    if FileSystems.get_scheme(pattern) is None:
        return files.is_dir(pattern)
    return pattern.endswith("/") or (not matches and not any(c in pattern for c in "*?["))


def _is_bookkeeping(path: str) -> bool:
    """A Hadoop/Spark bookkeeping file (``_SUCCESS``, ``_metadata``, ``.part-0.crc``), not data."""
    return files.basename(path).startswith(("_", "."))


def reencoded(encoding: str | None) -> str | None:
    """The codec name of a text encoding other than UTF-8 (whose files are read re-encoded), else None."""
    if not encoding:
        return None
    name = codecs.lookup(encoding).name
    return None if name in ("utf-8", "utf-8-sig") else name


@contextlib.contextmanager
def open_input(path: str) -> Iterator:
    """Opens an input file for reading, decompressed by its name.

    A gzip file is read by Python's ``gzip``, which raises ``EOFError`` when the file ends before
    its end-of-stream marker (a download or copy cut short) and an error for damaged data: Beam's
    decompressing reader returns end-of-file there, so a cut ``.csv.gz`` lost its second half
    without a word. (ISA-L's faster ``igzip`` drops the output of the read that meets the break.)
    Other compressions are Beam's.
    """
    if CompressionTypes.detect_compression_type(path) == CompressionTypes.GZIP:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            with gzip.GzipFile(fileobj=raw, mode="rb") as handle:
                yield _ReadUpToTheBreak(handle)
        return
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        yield handle


class _ReadUpToTheBreak:
    """A decompressing reader that hands over every byte decompressed before a break.

    ``read(n)`` of a gzip file loops over the decompressor in C, and a break (``EOFError`` at a
    cut) drops what that call had decompressed: up to ``n`` bytes of good records. Here a read is
    made of pieces of at most 1 MiB (``read1``); at a break, the pieces already read are returned
    and the error is raised by the next read.
    """

    _PIECE = 1 << 20

    def __init__(self, handle):
        self._handle = handle
        self._error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self._error is not None:
            raise self._error
        wanted = size if size is not None and size >= 0 else 1 << 62
        pieces, got = [], 0
        while got < wanted:
            try:
                piece = self._handle.read1(min(wanted - got, self._PIECE))
            except READ_BREAKS as error:
                if not pieces:
                    raise
                self._error = error
                break
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        return b"".join(pieces)

    def readline(self) -> bytes:
        return self._handle.readline()

    def seek(self, position: int) -> int:
        return self._handle.seek(position)

    def tell(self) -> int:
        return self._handle.tell()


@contextlib.contextmanager
def open_csv(path: str, encoding: str | None = None) -> Iterator:
    """Opens a CSV file (decompressed, :func:`open_input`) for reading as UTF-8 bytes: as it is, or
    re-encoded from ``encoding`` (:class:`csv_records.Utf8Reader`, forward only)."""
    with open_input(path) as handle:
        codec = reencoded(encoding)
        yield csv_records.Utf8Reader(handle, codec) if codec else handle


def delimiter_of(path: str, delimiter: str | None = None) -> str:
    """The field delimiter of a CSV file: ``delimiter`` when given, else a tab for ``.tsv[.gz]``
    files and a comma for the others."""
    if delimiter:
        return delimiter
    return "\t" if path.lower().endswith(TAB_SUFFIXES) else ","


@dataclasses.dataclass(frozen=True)
class CsvFormat:
    """How a job's CSV files are written: one value that every raw-data reader takes (``run``,
    ``check-skew``, the incremental analysis, ``lineage row``), recorded in ``run.json``.

    Attributes:
        delimiter: The field delimiter; None: a tab for ``.tsv[.gz]`` files, else a comma
            (:func:`delimiter_of`).
        quoted_newlines: Quoted values may hold newlines (RFC 4180): a record ends at a newline
            outside quotes, and each file is read whole (``pipelines/formats/csv_records.py``).
        encoding: The text encoding when not UTF-8 (e.g. ``cp1252``): each file is then read whole,
            re-encoded to UTF-8 (dead-letter offsets count UTF-8 bytes). Kept as its codec name.
        decimal_comma: Floats are written with a decimal comma (``12,45``).
        missing_values: Cell texts besides the empty cell that mean a missing value (``NA``, ...).
    """

    delimiter: str | None = None
    quoted_newlines: bool = False
    encoding: str | None = None
    decimal_comma: bool = False
    missing_values: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "encoding", reencoded(self.encoding))
        tokens = tuple(dict.fromkeys(str(token) for token in self.missing_values if str(token) != ""))
        object.__setattr__(self, "missing_values", tokens)

    def parameters(self) -> dict:
        """The format as ``run.json``'s ``parameters`` record it."""
        return {
            "allow_quoted_newlines": self.quoted_newlines,
            "csv_delimiter": self.delimiter,
            "encoding": self.encoding,
            "decimal_comma": self.decimal_comma,
            "missing_values": ["", *self.missing_values],
        }

    @classmethod
    def from_parameters(cls, parameters: dict) -> "CsvFormat":
        """The format a run recorded (:meth:`parameters`); the defaults for a run that recorded none."""
        return cls(
            parameters.get("csv_delimiter"),
            bool(parameters.get("allow_quoted_newlines")),
            parameters.get("encoding"),
            bool(parameters.get("decimal_comma")),
            tuple(parameters.get("missing_values") or ()),
        )


DEFAULT_CSV_FORMAT = CsvFormat()  # commas (tabs for .tsv), one line a record, UTF-8, decimal points
