"""The protocol's vocabulary, declared once for the aggregator and the data holders.

Every step a data holder answers is a :class:`Step`; every message field a :class:`Field`. Both sides
import this module, so a renamed field cannot drift between them (Flower's SecAgg+ workflow declares
its keys the same way). The step values are Flower message types (``category.action``).

=====================  ===========================================================================
step                   request -> answer
=====================  ===========================================================================
``SETUP``              n_parties, fingerprint, CONTEXT -> party, schema, count, exps (+ PK_SHARE: lead;
                       + seal_pk: with --threshold)
``CKG``                LEAD_PK_SHARE -> PK_SHARE (non-leads)
``JOINT_KEY``          rotations, exps, total_rows, JOINT_PK (+ seal_pks) -> key_tag, STATS (+ R1_SHARE,
                       ROT_SHARE: lead; + piece-<j>: with --threshold, one sealed piece per other holder)
``RKG1``               rotations, LEAD_R1_SHARE, LEAD_ROT_SHARE -> R1_SHARE, ROT_SHARE (non-leads)
``RKG2``               ROUND1, CTS (+ piece-<d>: the pieces sealed for this holder) -> R2_SHARE, SHARES
                       (decryption shares of the first statistics sum)
``EVAL_KEYS``          mean, EVAL_KEYS -> key_tag, exps (magnitudes of the centred squares)
``ROTATION_KEYS``      the rotation keys beyond the first chunk, pipelined: (lead) rotations -> ROT_SHARE;
                       (non-leads) rotations, LEAD_ROT_SHARE -> ROT_SHARE; (all, optional) ROT_KEYS
                       (one chunk's joint keys to install)
``STATS``              mean, exps, total_rows -> STATS (second statistics sum)
``RECOVER``            dropped, rebuilder -> PIECE (this holder's piece of the dropped share, sealed for
                       the rebuilder)
``ADOPT``              dropped, piece-<j> (the helpers' sealed pieces) -> key_tag (the rebuilder now
                       answers for the dropped holder)
``HELLO``              fingerprint (+ CONTEXT, EVAL_KEYS for holders that keep no public keys)
                       -> party, key_tag
``REFRESH``            refresh_tag, REQUEST -> SHARES (refresh shares for every ciphertext of the request;
                       with a dropout, STAND_INS names who adds the shares of which dropped holder, also
                       in DECRYPT and KEY_SWITCH)
``DECRYPT``            CTS -> SHARES (flooded threshold-decryption shares)
``KEY_SWITCH``         CTS, QUERIER_PK -> SHARES (key-switch shares towards the querier)
``TRAIN``              job, iteration, kind, stats, scale, MODEL (+ VELOCITY: this holder's own, with
                       momentum, after its first iteration; + loss_scale: also the loss of MODEL, from
                       the first local step's forward pass) -> status (+ CTS: pending; MODEL, + VELOCITY
                       with momentum: done; + LOSS: in the first answer after the loss is computed)
``RESUME``             job, refresh_tag, offset, count, CTS (the c0 parts of this holder's refreshed
                       ciphertexts: their c1 parts are the CRPs of that REFRESH request, which the holder
                       has) -> as ``TRAIN``
=====================  ===========================================================================
"""

from __future__ import annotations

import enum


class Step(str, enum.Enum):
    """A protocol step a data holder answers (the Flower message type)."""

    # key generation and the global statistics
    SETUP = "query.setup"
    CKG = "query.ckg"
    JOINT_KEY = "query.jointkey"
    # relinearization (two rounds) and rotation keys
    RKG1 = "query.rkg1"
    RKG2 = "query.rkg2"
    # evaluation keys to every holder; the second statistics sum
    EVAL_KEYS = "query.evalkeys"
    STATS = "query.stats"
    # the rotation keys that did not fit the first round (large rings), a chunk per round
    ROTATION_KEYS = "query.rotkeys"
    # a resumed or prediction run checks every holder
    HELLO = "query.hello"
    # shares on ciphertexts
    REFRESH = "query.refresh"
    DECRYPT = "query.decrypt"
    KEY_SWITCH = "query.pcks"
    # t-out-of-N: a dropped holder's pieces to the rebuilding holder, which then answers for it
    RECOVER = "query.recover"
    ADOPT = "query.adopt"
    # jobs on the encrypted global model
    TRAIN = "train.local"
    RESUME = "train.resume"


class Field(str, enum.Enum):
    """A message field (config key or blob name)."""

    # config: who, and the data schema
    PARTY = "party"
    N_PARTIES = "n_parties"
    FINGERPRINT = "fingerprint"
    COLUMNS = "columns"
    TARGET = "target"
    # ... and the public statistics bounds
    FEATURES = "features"
    COUNT = "count"
    EXPS = "exps"
    TOTAL_ROWS = "total_rows"
    MEAN = "mean"
    # key generation
    ROTATIONS = "rotations"
    KEY_TAG = "key_tag"
    # a job request
    JOB = "job"
    ITERATION = "iteration"
    KIND = "kind"
    SCALE = "scale"
    LOSS_SCALE = "loss_scale"  # TRAIN: also the loss of the request's model, on the first step's batch
    LOSS = "loss"  # the holder's scaled encrypted sum of squared errors (in a TRAIN job's answer)
    GLOBAL_STATS = "stats"  # the revealed global statistics (JSON), in TRAIN
    # a job answer
    STATUS = "status"
    WINDOWS = "windows"
    FORMS_USED = "forms_used"
    OPERATIONS = "operations"
    # a querier's request and response files
    SHAPE = "shape"
    LAYOUT = "layout"
    LAYOUTS = "layouts"
    # the node-local holder service's socket (flower.link): a request's op, step and configurations
    OP = "op"
    STEP = "step"
    RUN_CONFIG = "run_config"
    NODE_CONFIG = "node_config"
    # (answer) seconds a deployed holder spent on the round, by part (JSON object): process_start,
    # relay, load, step, encode (rhode.federated.flower.relay)
    TIMING = "timing"
    # blobs: the public key and the evaluation keys
    CONTEXT = "context"
    PK_SHARE = "pk_share"
    LEAD_PK_SHARE = "lead_pk_share"
    JOINT_PK = "joint_pk"
    EVAL_KEYS = "evalkeys"
    # relinearization
    R1_SHARE = "r1_share"
    LEAD_R1_SHARE = "lead_r1_share"
    ROUND1 = "round1"
    R2_SHARE = "r2_share"
    # rotation keys
    ROT_SHARE = "rot_share"
    LEAD_ROT_SHARE = "lead_rot_share"
    ROT_KEYS = "rot_keys"  # one chunk of joint rotation keys
    # t-out-of-N (--threshold): sealing keys, sealed pieces (blobs "piece-<holder>"), recovery
    SEAL_PK = "seal_pk"
    SEAL_PKS = "seal_pks"
    PIECE = "piece"
    DROPPED = "dropped"
    REBUILDER = "rebuilder"
    REFRESH_TAG = "refresh_tag"  # names a REFRESH round; RESUME names the one whose CRPs it needs
    OFFSET = "offset"  # RESUME: where this holder's ciphertexts start among that round's CRPs
    STAND_INS = "stand_ins"  # JSON {holder: [dropped holders it answers for]} in share requests
    # ciphertexts and shares on them
    STATS = "stats"
    CTS = "cts"
    SHARES = "shares"
    REQUEST = "request"
    # the querier's key and result; encrypted models
    QUERIER_PK = "querier_pk"
    RESULT = "result"
    MODEL = "model"
    VELOCITY = "velocity"  # one data holder's encrypted momentum velocity (per-holder state)


def input_blob(t: int) -> str:
    """The blob of a querier's encrypted input at timestep ``t`` (request file)."""
    return f"x{t}"


class WorkerOp(str, enum.Enum):
    """A request to a node's holder service (:mod:`rhode.federated.flower.link`)."""

    STEP = "step"      # a protocol step: STEP, RUN_CONFIG, NODE_CONFIG; the step's payload in the next frame
    STATUS = "status"
    STOP = "stop"


class Status(str, enum.Enum):
    """Where a data holder's job stands after ``TRAIN`` or ``RESUME``."""

    PENDING = "pending"  # paused: its CTS need a collective refresh
    DONE = "done"  # finished: MODEL holds its result
    IDLE = "idle"  # (holder service status)
    STOPPED = "stopped"


class JobKind(str, enum.Enum):
    """What a data holder's job computes on the encrypted global model."""

    TRAIN = "train"  # local training: the local model
    LOSS = "loss"  # encrypted sum of squared errors on one batch, scaled by ``scale``


def piece_blob(holder: int) -> str:
    """The blob of a sealed key piece from (or for) data holder ``holder``."""
    return f"{Field.PIECE.value}-{holder}"
