"""Constants shared by the SDK end-to-end suites."""

from __future__ import annotations

from typing import Final

import pytest
from anthropic.types import MessageParam
from openai.types.chat import ChatCompletionMessageParam

# The openai SDK stops at `data: [DONE]` (or an error) without closing its generator chain;
# under trio those generators are finalised by the garbage collector with a ResourceWarning.
# Not the gateway's doing (it happens against the mock directly too), so only that is ignored.
OPENAI_SDK_WARNINGS: Final = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.[^']*' was garbage collected"
    ":ResourceWarning"
)

PROMPT: Final = "What is the weather in Paris?"
MESSAGES: Final[list[ChatCompletionMessageParam]] = [{"role": "user", "content": PROMPT}]
ANTHROPIC_MESSAGES: Final[list[MessageParam]] = [{"role": "user", "content": PROMPT}]
#: The mock's eight default text deltas, joined.
TEXT: Final = "Hello from the mock upstream. Streaming works"
