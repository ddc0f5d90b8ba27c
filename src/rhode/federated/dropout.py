"""The aggregator's side of a dropout under a t-out-of-N key (``--threshold t``): name, rebuild, go on.

When a round finds data holders gone (:class:`~rhode.errors.HolderUnavailableError`), :func:`recover`
takes them out of the active set, and for every share they answered for (their own and those they had
adopted) asks t of the remaining holders (``RECOVER``) for their piece of it, sealed for the
designated rebuilder, the lowest-indexed remaining holder, and hands the sealed pieces to it
(``ADOPT``): two rounds per share. From then on that holder answers refresh, decryption and
key-switch rounds for both; the dropped holders' local models and velocities are left out of FedAvg
(weights renormalized over the remaining holders' windows), and the iteration in progress restarts
from its start (:meth:`~rhode.federated.aggregator.Aggregator.iteration`). Without ``--threshold``
(t = N) the error stands, as before: the run stops and names the holder.
"""

from __future__ import annotations

import logging

from rhode.errors import HolderUnavailableError, ProtocolError
from rhode.federated.payload import Payload
from rhode.federated.schema import Field, Step, piece_blob

log = logging.getLogger("rhode.dropout")


def stand_ins(agg) -> dict[int, int]:
    """Party -> the active holder that answers for it (itself, or the rebuilder of its share)."""
    out = {i: i for i in agg.active}
    for rec in agg.dropouts:
        out[rec["party"]] = rec["rebuilder"]
    return out


def recover(agg, exc: HolderUnavailableError, iteration: int) -> None:
    """Rebuild the shares of the holders ``exc`` names at a remaining holder (or raise ``exc``)."""
    t = agg.run.key_threshold
    gone = [d for d in exc.parties if d in agg.active]
    if t == agg.n or not gone:
        raise exc
    remaining = [i for i in agg.active if i not in gone]
    if len(remaining) < t:
        raise ProtocolError(
            f"{exc}; {len(remaining)} data holder(s) remain, fewer than the key's threshold {t}: "
            "nothing can be refreshed or decrypted (restart their SuperNodes and resume the run)") from None
    homes = stand_ins(agg)
    shares = sorted(p for p, who in homes.items() if who in gone)  # theirs and those they answered for
    rebuilder, helpers = remaining[0], remaining[:t]
    for d in shares:
        log.warning("data holder %d is gone: holder %d rebuilds its share from %d pieces", d, rebuilder, t)
        ask = {j: Payload({Field.DROPPED.value: d, Field.REBUILDER.value: rebuilder}) for j in helpers}
        ans = agg.t.exchange(Step.RECOVER, ask, agg.timeouts[0])
        blobs = {piece_blob(j): ans[j].blob(Field.PIECE.value) for j in helpers}
        adopt = {rebuilder: Payload({Field.DROPPED.value: d}, blobs)}
        done = agg.t.exchange(Step.ADOPT, adopt, agg.timeouts[0])
        if done[rebuilder].config.get(Field.KEY_TAG.value) != agg.ctx.key_tag:
            raise ProtocolError(f"data holder {rebuilder} rebuilt holder {d}'s share for another joint key")
        since = next((r["iteration"] for r in agg.dropouts if r["party"] == d), iteration + 1)
        agg.dropouts = [r for r in agg.dropouts if r["party"] != d]
        agg.dropouts.append({"party": d, "iteration": since, "rebuilder": rebuilder})
    agg.active = remaining  # only now: a helper lost during the recovery leaves every share to re-home
    for d in gone:
        agg.velocities.pop(d, None)
    if agg.on_dropout is not None:
        agg.on_dropout(agg.dropouts)  # the run policy records them at once (run.json)
