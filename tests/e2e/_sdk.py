"""Constants shared by the SDK end-to-end suites."""

from __future__ import annotations

from typing import Final

import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

# The SDKs stop at `data: [DONE]` or raise on an in-band error without closing their
# generator chain; under trio those generators are finalised by the garbage collector with a
# ResourceWarning, whenever the collector runs (so in whichever test is running then). Not
# the gateway's doing (it happens against the mock directly too), so only that is ignored.
SDK_WARNINGS: Final = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|anthropic|httpx2|httpcore2)\.[^']*' was garbage collected"
    ":ResourceWarning"
)

PROMPT: Final = "What is the weather in Paris?"
MESSAGES: Final[list[ChatCompletionMessageParam]] = [{"role": "user", "content": PROMPT}]
ANTHROPIC_MESSAGES: Final[list[MessageParam]] = [{"role": "user", "content": PROMPT}]
#: The mock's eight default text deltas, joined.
TEXT: Final = "Hello from the mock upstream. Streaming works"
