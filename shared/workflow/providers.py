"""LLM providers a node may name. All speak the OpenAI-compatible chat-completions protocol;
keys and base URLs come from the environment (`<PROVIDER>_API_KEY`, `<PROVIDER>_BASE_URL`),
never from a workflow definition, so no secret is stored in one."""

from __future__ import annotations

from typing import Final, Literal

Provider = Literal["deepseek", "openai", "qwen", "dashscope", "ollama", "vllm", "custom"]

# The model used when a node names none; providers without one require `model`.
DEFAULT_MODELS: Final[dict[str, str | None]] = {
    "deepseek": "deepseek-chat",
    "openai": "gpt-4o-mini",
    "qwen": "qwen-plus",
    "dashscope": "qwen-plus",
    "ollama": None,
    "vllm": None,
    "custom": None,
}
