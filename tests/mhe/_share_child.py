"""Run in a separate OS process by test_serial.py: compute shares from bytes only.

argv: workdir. Reads context.bin, party.key, cts.bin, refresh.bin; writes dec.bin and refresh_share.bin.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rhode.mhe import Party
from rhode.mhe.serial import (
    Kind,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    context_from_bytes,
    refresh_request_from_bytes,
    refresh_shares_to_bytes,
)


def main(workdir: Path) -> None:
    ctx = context_from_bytes((workdir / "context.bin").read_bytes())
    party = Party.load(ctx, workdir / "party.key")
    cts = ciphertexts_from_bytes(ctx, (workdir / "cts.bin").read_bytes())
    shares = party.decryption_share(cts)
    (workdir / "dec.bin").write_bytes(ciphertexts_to_bytes(ctx, shares, Kind.DECRYPTION_SHARES))
    c1s, crps = refresh_request_from_bytes(ctx, (workdir / "refresh.bin").read_bytes())
    pairs = party.refresh_share(c1s, crps)
    (workdir / "refresh_share.bin").write_bytes(refresh_shares_to_bytes(ctx, pairs))
    print(f"party {party.index} done")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
