"""Run in a separate OS process by test_serial.py: compute shares from bytes only.

argv: workdir. Reads context.bin, party.key, cts.bin, refresh.bin; writes dec.bin and refresh_share.bin.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rhode.mhe import Party
from rhode.mhe.protocols import decryption, refresh
from rhode.mhe.serial import ciphertexts_from_bytes, context_from_bytes


def main(workdir: Path) -> None:
    ctx = context_from_bytes((workdir / "context.bin").read_bytes())
    party = Party.load(ctx, workdir / "party.key")
    cts = ciphertexts_from_bytes(ctx, (workdir / "cts.bin").read_bytes())
    (workdir / "dec.bin").write_bytes(decryption.gen_share(party, cts).to_bytes(ctx))
    request = refresh.RefreshRequest.from_bytes(ctx, (workdir / "refresh.bin").read_bytes())
    (workdir / "refresh_share.bin").write_bytes(refresh.gen_share(party, request).to_bytes(ctx))
    print(f"party {party.index} done")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
