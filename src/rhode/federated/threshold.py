"""A data holder's side of t-out-of-N keys (``--threshold t``): pieces at key generation, recovery.

With ``t < N`` every holder makes an X25519 sealing key in ``SETUP`` and publishes its public half; in
``JOINT_KEY`` (the aggregator hands every holder the others' public sealing keys) it splits its bound
secret share into Shamir pieces (:mod:`rhode.mhe.protocols.recovery`) and answers one piece per other
holder, sealed for it (:mod:`rhode.federated.sealing`); in ``RKG2`` it receives the pieces sealed for
it and keeps them (0600). When a holder drops out, ``RECOVER`` asks t of the others for their piece of
its share, sealed for the rebuilding holder, and ``ADOPT`` hands them to that holder, which rebuilds
the share and from then on answers refresh, decryption and key-switch rounds for both.
"""

from __future__ import annotations

import json

from rhode.errors import ProtocolError, SerializationError
from rhode.federated import sealing
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, piece_blob
from rhode.federated.state import PEERS, SEALING_KEY, HolderState
from rhode.mhe.protocols import recovery


def _piece_name(dealer: int) -> str:
    return f"piece-from-{dealer}.rhode"


def sealing_public_key(state: HolderState) -> str:
    """SETUP: a fresh sealing key for this epoch; its public half (hex) for the answer."""
    private = sealing.new_private_key()
    state.put_secret(SEALING_KEY, private)
    return sealing.public_key(private).hex()


def _peers(state: HolderState) -> dict[int, bytes]:
    raw = json.loads(state.need_secret(PEERS, "public sealing keys of the other holders"))
    return {int(k): bytes.fromhex(v) for k, v in raw.items()}


def deal_pieces(state: HolderState, p: Payload) -> dict[str, bytes]:
    """JOINT_KEY: keep the others' public sealing keys; this holder's pieces, one sealed per holder."""
    keys = p.config.get(Field.SEAL_PKS.value)
    n, t = state.run.n_parties, state.run.key_threshold
    if not isinstance(keys, list) or len(keys) != n or not all(isinstance(k, str) for k in keys):
        raise SerializationError(f"message has no valid '{Field.SEAL_PKS.value}' field ({n} hex keys)")
    try:
        peers = {j: bytes.fromhex(k) for j, k in enumerate(keys)}
    except ValueError:
        raise SerializationError("a public sealing key is not hexadecimal") from None
    own = state.need_secret(SEALING_KEY, "sealing key")
    if peers[state.index] != sealing.public_key(own):
        raise ProtocolError(f"the aggregator handed data holder {state.index} another sealing key as its own")
    state.put_secret(PEERS, json.dumps({j: k.hex() for j, k in peers.items()}).encode())
    party, ctx = state.party(), state.context()
    return {
        piece_blob(j): sealing.seal(
            own, peers[j], piece.to_bytes(ctx), sealing.binding(ctx.key_tag, state.index, j))
        for j, piece in recovery.split(party, n, t).items()
    }


def keep_pieces(state: HolderState, p: Payload) -> int:
    """RKG2: open and keep the pieces sealed for this holder (one from every other); their count."""
    ctx, own, peers = state.context(), None, None
    kept = 0
    for d in range(state.run.n_parties):
        if d == state.index or piece_blob(d) not in p.blobs:
            continue
        own = own or state.need_secret(SEALING_KEY, "sealing key")
        peers = peers or _peers(state)
        data = sealing.open_sealed(
            own, peers[d], p.blob(piece_blob(d)), sealing.binding(ctx.key_tag, d, state.index))
        piece = recovery.Piece.from_bytes(ctx, data)
        if (piece.dealer, piece.recipient, piece.key_tag) != (d, state.index, ctx.key_tag):
            raise ProtocolError(
                f"data holder {d}'s piece for data holder {state.index} names another holder or key")
        state.put_secret(_piece_name(d), data)
        kept += 1
    return kept


def reseal_piece(state: HolderState, p: Payload) -> bytes:
    """RECOVER: this holder's piece of the dropped holder's share, sealed for the rebuilding holder."""
    dropped, rebuilder = p.get(Field.DROPPED.value, int), p.get(Field.REBUILDER.value, int)
    ctx = state.context()
    data = state.need_secret(_piece_name(dropped), f"piece of data holder {dropped}'s share")
    return sealing.seal(state.need_secret(SEALING_KEY, "sealing key"), _peers(state)[rebuilder], data,
                        sealing.binding(ctx.key_tag, state.index, rebuilder))


def adopt(state: HolderState, p: Payload) -> None:
    """ADOPT: rebuild the dropped holder's share from the helpers' sealed pieces and answer for it."""
    dropped, ctx = p.get(Field.DROPPED.value, int), state.context()
    own, peers = state.need_secret(SEALING_KEY, "sealing key"), _peers(state)
    pieces = []
    for j in sorted(peers):
        if piece_blob(j) in p.blobs:
            data = sealing.open_sealed(own, peers[j], p.blob(piece_blob(j)),
                                       sealing.binding(ctx.key_tag, j, state.index))
            pieces.append(recovery.Piece.from_bytes(ctx, data))
    state.adopt(recovery.rebuild(state.party(), dropped, pieces, state.run.key_threshold))
