"""The protocol names shared by config, routing, the ledger and the renderers."""

from __future__ import annotations

from typing import Final, Literal

Protocol = Literal["anthropic", "openai-chat", "openai-responses"]

PROTOCOLS: Final[tuple[Protocol, ...]] = ("anthropic", "openai-chat", "openai-responses")
