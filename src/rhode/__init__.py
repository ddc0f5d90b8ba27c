"""rhode: privacy-preserving federated training of recurrent networks under multiparty CKKS."""

from rhode.errors import (
    CheckpointError,
    DataError,
    ParameterError,
    ProtocolError,
    RhodeError,
    SerializationError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "DataError",
    "ParameterError",
    "ProtocolError",
    "RhodeError",
    "SerializationError",
    "__version__",
]
