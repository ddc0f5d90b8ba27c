"""Payloads as Flower records: ``config`` -> ConfigRecord, every blob -> a raw-bytes ``Array`` in an
``ArrayRecord`` (chunked by Flower, never JSON or config strings)."""

from __future__ import annotations

from rhode.errors import SerializationError
from rhode.federated.payload import Payload, check_config


def to_recorddict(p: Payload):
    """A Flower ``RecordDict``: ``config`` -> ConfigRecord, every blob -> a raw-bytes Array."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    p = p.encoded()
    arrays = {name: Array(dtype="bytes", shape=(len(b),), stype="raw", data=bytes(b))
              for name, b in p.blobs.items()}
    return RecordDict({"config": ConfigRecord(check_config(p.config)), "blobs": ArrayRecord(arrays)})


def from_recorddict(rd) -> Payload:
    """Inverse of :func:`to_recorddict`; anything unexpected is a SerializationError."""
    try:
        cfg_rec = rd.config_records.get("config") if hasattr(rd, "config_records") else None
        arr_rec = rd.array_records.get("blobs") if hasattr(rd, "array_records") else None
    except Exception:
        raise SerializationError("message content is not a rhode payload") from None
    if cfg_rec is None or arr_rec is None:
        raise SerializationError("message content is not a rhode payload (config or blobs missing)")
    config = check_config(dict(cfg_rec))
    blobs = {}
    for name in arr_rec:
        arr = arr_rec[name]
        if getattr(arr, "stype", None) != "raw" or getattr(arr, "dtype", None) != "bytes":
            raise SerializationError(f"payload '{name}' is not a raw-bytes array")
        data = arr.data
        if not isinstance(data, (bytes, bytearray)):
            raise SerializationError(f"payload '{name}' is not bytes")
        blobs[name] = bytes(data)
    return Payload(config, blobs)
