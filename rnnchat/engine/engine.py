"""The inference engine: loads the shipped checkpoints once and serves conversations and batch generation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rnnchat.engine.conversation import Conversation
from rnnchat.models.lm import LMDecoder
from rnnchat.train.lm import DEFAULT_CHECKPOINT, load_lm


class Engine:
    """Holds the loaded models; `conversation()` starts a new conversation with the language model."""

    def __init__(self, lm_path: Path | str = DEFAULT_CHECKPOINT):
        self.lm_path = Path(lm_path)
        model, self.vocab, self.lm_header = load_lm(self.lm_path)
        self.decoder = LMDecoder(model)
        ident = json.dumps([self.lm_header["config"], self.lm_header["vocab"]], sort_keys=True)
        self.model_id = hashlib.sha256(ident.encode()).hexdigest()[:16]

    def conversation(self) -> Conversation:
        return Conversation(self.decoder, self.vocab, self.model_id)
