"""Stamp model.onnx with its card's digest, so the runtime refuses an edited or damaged card.json."""
from __future__ import annotations

from pathlib import Path

import onnx

from zoo.card import ModelCard
from zoo.files import CARD_DIGEST_KEY
from zoo.runtime import card_digest


def stamp_card_digest(onnx_path: Path, card: ModelCard) -> None:
    """Record `card_digest(card)` in the graph's metadata_props (replacing an older one).

    Call it once the card's content is final and before the files are hashed into `card.files`:
    the digest leaves `files` out, and model.onnx's own hash must be taken after the stamp. Only
    metadata changes, so parity results and test vectors stay valid; external data is left as it is.
    """
    proto = onnx.load(str(onnx_path), load_external_data=False)
    kept = [entry for entry in proto.metadata_props if entry.key != CARD_DIGEST_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    stamp = proto.metadata_props.add()
    stamp.key = CARD_DIGEST_KEY
    stamp.value = card_digest(card.to_dict())
    onnx.save(proto, str(onnx_path))
