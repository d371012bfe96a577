"""Vectorised encoding of transformed RecordBatches into framed tf.Example TFRecords.

Transformed features are most often one int64 or float32 per row. For such a batch every example
has the same layout up to the varint bytes of its integers, so the protobuf wire format can be
written for all rows at once with numpy: each column becomes a ``[rows, width]`` byte matrix (with
a mask of the bytes each row uses), the matrices are put side by side and the masked bytes read out
row by row. Encoding and framing the taxi features this way takes about 2.8 microseconds a row,
against 5.0 for one protobuf message per row (``tfx_bsl``'s ``RecordBatchToExamplesEncoder``, about
4) plus framing; ``tfx_bsl`` stays the encoder for any other batch (strings, lists, missing values).

Wire format written (proto3, what ``tf.train.Example.SerializeToString`` writes for such rows up to
the order of the map entries, which parsers ignore)::

    Example   = 0x0A varint(len) Features
    Features  = (0x0A varint(len) Entry)*           one per column, in column order
    Entry     = 0x0A varint(len(key)) key 0x12 varint(len) Feature
    Feature   = 0x12 0x06 (0x0A 0x04 float32)       float_list, packed
              | 0x1A varint(s+2) (0x0A s varint(v))  int64_list, packed, s = bytes of varint(v)
"""

import google_crc32c
import numpy as np
import pyarrow as pa

__all__ = ["encode_framed", "one_value_per_row"]

_MAX_KEY = 100  # keeps every length prefix below one single-byte varint (< 128)
_SUPPORTED = (pa.int64(), pa.float32())


def one_value_per_row(column: pa.Array) -> pa.Array | None:
    """The values of a list column whose every row holds exactly one (non-null) value, else None."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)) or column.null_count:
        return None
    offsets = column.offsets.to_numpy()
    if not np.array_equal(np.diff(offsets), np.ones(len(column), dtype=offsets.dtype)):
        return None
    values = column.values.slice(offsets[0], len(column))
    return None if values.null_count else values


def _values(column: pa.Array) -> np.ndarray | None:
    """The one value of each row of an int64 or float32 list column, or None when a row has not exactly one."""
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        return None
    if column.type.value_type not in _SUPPORTED:
        return None
    values = one_value_per_row(column)
    return None if values is None else values.to_numpy(zero_copy_only=False)


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint bytes of unsigned 64-bit values: a ``[n, width]`` matrix (width: the longest) and
    each row's byte count. Built one byte column at a time (7 bits each), in one-dimensional
    passes: 8x faster than broadcasting every value against every shift."""
    values = values.astype(np.uint64, copy=False)
    top = int(values.max()) if len(values) else 0
    width = max(1, (top.bit_length() + 6) // 7)
    out = np.empty((len(values), width), dtype=np.uint8)
    sizes = np.ones(len(values), dtype=np.int64)
    rest = values
    for k in range(width):
        low = (rest & np.uint64(0x7F)).astype(np.uint8)
        if k < width - 1:
            rest = rest >> np.uint64(7)
            more = rest != 0  # another byte follows: this one sets its high bit
            low |= more.view(np.uint8) << np.uint8(7)
            sizes += more
        out[:, k] = low
    return out, sizes


def _masked_crcs(crcs: np.ndarray) -> np.ndarray:
    crcs = crcs.astype(np.uint32)
    return (((crcs >> np.uint32(15)) | (crcs << np.uint32(17))) + np.uint32(0xA282EAD8)).astype("<u4")


def _entry_head(key: bytes, float_value: bool) -> np.ndarray:
    """The bytes of a map entry before its value; the length bytes of int64 entries are 0 here."""
    if float_value:
        head = [0x0A, len(key) + 12, 0x0A, len(key), *key, 0x12, 8, 0x12, 6, 0x0A, 4]
    else:
        head = [0x0A, 0, 0x0A, len(key), *key, 0x12, 0, 0x1A, 0, 0x0A, 0]
    return np.array(head, dtype=np.uint8)


_FRAME_HEAD, _HEADER, _FRAME_TAIL = 12, 6, 4  # length + its CRC; Example tag + varint; data CRC


def encode_framed(
    batch: pa.RecordBatch, keep_rows: np.ndarray | None = None
) -> tuple[memoryview, dict[int, bytes]] | None:
    """Encodes a batch of one int64 or float32 per row in every column as TFRecord file content.

    Every row is laid out in one ``[rows, width]`` byte matrix (frame head, Example header, each
    column's entry, frame tail) with a mask of the bytes it uses; reading the masked bytes out row
    by row gives the examples (to checksum) and then the framed records.

    Args:
        batch: Columns of one int64 or float32 per row.
        keep_rows: Row indices whose serialized examples are also returned (the parity sample).

    Returns:
        The framed records (length, masked CRC of it, example, masked CRC of it; one per row, in
        row order; a view of the encoder's buffer, not a copy: hundreds of bytes a row) and
        ``{row: serialized example}`` for ``keep_rows``; None for any other batch (empty, another
        layout, a name over 100 bytes), which the caller encodes otherwise.
    """
    rows = batch.num_rows
    if rows == 0:
        return None
    entries = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        values = _values(column)
        if values is None or len(name.encode()) > _MAX_KEY:
            return None
        head = _entry_head(name.encode(), values.dtype == np.float32)
        if values.dtype == np.float32:
            entries.append((head, values.astype("<f4", copy=False).view(np.uint8).reshape(rows, 4), None))
        else:
            entries.append((head, *_varints(values.astype(np.int64, copy=False).view(np.uint64))))
    width = _FRAME_HEAD + _HEADER + sum(len(h) + v.shape[1] for h, v, _ in entries) + _FRAME_TAIL
    # the bytes (and mask) every row shares, set once and copied to all rows
    template = np.zeros(width, dtype=np.uint8)
    used_template = np.ones(width, dtype=bool)
    template[_FRAME_HEAD] = 0x0A  # Example.features
    at = _FRAME_HEAD + _HEADER
    for head, value, sizes in entries:
        template[at : at + len(head)] = head
        if sizes is not None:  # bytes beyond the shortest varint of the column: set per row below
            used_template[at + len(head) + int(sizes.min()) : at + len(head) + value.shape[1]] = False
        at += len(head) + value.shape[1]
    used_template[_FRAME_HEAD + 1 : _FRAME_HEAD + _HEADER] = False  # the Example's length, per row
    out = np.empty((rows, width), dtype=np.uint8)
    out[:] = template
    used = np.empty((rows, width), dtype=bool)
    used[:] = used_template
    features_length = np.full(rows, sum(len(h) for h, _, _ in entries), dtype=np.int64)
    at = _FRAME_HEAD + _HEADER
    for head, value, sizes in entries:
        end = at + len(head)
        out[:, end : end + value.shape[1]] = value
        if sizes is None:
            features_length += value.shape[1]
        else:
            out[:, at + 1] = len(head) - 2 + sizes  # entry length
            out[:, end - 5] = sizes + 4  # Feature length
            out[:, end - 3] = sizes + 2  # Int64List length
            out[:, end - 1] = sizes  # packed values length
            shortest = int(sizes.min())
            if shortest < value.shape[1]:
                used[:, end + shortest : end + value.shape[1]] = np.arange(shortest, value.shape[1]) < sizes[:, None]
            features_length += sizes
        at = end + value.shape[1]
    header, header_sizes = _varints(features_length)
    if header.shape[1] > _HEADER - 1:  # examples of 2**28 bytes or more
        return None
    out[:, _FRAME_HEAD + 1 : _FRAME_HEAD + 1 + header.shape[1]] = header
    used[:, _FRAME_HEAD + 1 : _FRAME_HEAD + _HEADER] = np.arange(_HEADER - 1) < header_sizes[:, None]
    lengths = 1 + header_sizes + features_length
    length_bytes = lengths.astype("<u8")
    distinct, which = np.unique(length_bytes, return_inverse=True)
    length_crcs = _masked_crcs(np.array([google_crc32c.value(d.tobytes()) for d in distinct], dtype=np.uint32))
    out[:, :8] = length_bytes.view(np.uint8).reshape(rows, 8)
    out[:, 8:12] = length_crcs[which].view(np.uint8).reshape(rows, 4)
    # the framed records with their data CRCs still to fill in: one gather of the used bytes
    framed = out[used]
    ends = np.cumsum(lengths + _FRAME_HEAD + _FRAME_TAIL)
    starts = ends - lengths - _FRAME_TAIL  # where each example starts
    data = framed.tobytes()
    slices = map(slice, starts.tolist(), (ends - _FRAME_TAIL).tolist())
    data_crcs = np.fromiter(map(google_crc32c.value, map(data.__getitem__, slices)), dtype=np.uint32, count=rows)
    tails = (ends - _FRAME_TAIL)[:, None] + np.arange(_FRAME_TAIL)
    framed[tails] = _masked_crcs(data_crcs).view(np.uint8).reshape(rows, _FRAME_TAIL)
    kept = {int(i): data[starts[i] : ends[i] - _FRAME_TAIL] for i in (keep_rows if keep_rows is not None else ())}
    return memoryview(framed), kept
