"""Where a provider's chat completions are served, and with which key, from the environment.

Configuration is `<PROVIDER>_API_KEY` and `<PROVIDER>_BASE_URL` (`qwen` and `dashscope` are one
service and read both `DASHSCOPE_*` and `QWEN_*`). Empty variables count as unset. deepseek,
openai, qwen and dashscope need a key; ollama has a keyless local default; vllm and custom have
no default and need a base URL, the key being optional.

Security rule: a workflow node may name its own `base_url`, but the provider's key from the
environment is sent ONLY to the base URL the environment configures (or the provider's
default). When the node's base_url differs from that one (compared with the trailing slash
stripped), the endpoint carries no key: otherwise any workflow author could collect the
platform's key by pointing base_url at a server of their own. A node's base_url also makes the
provider usable without any configuration, as a keyless endpoint. A node's base_url must also
pass the outbound guard (no private addresses): given the policy, the endpoint carries it and
the client checks the URL before every request and connects to the addresses it checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from services.executor.worker.llm.client import LLMError
from shared.i18n import Message
from shared.net.outbound import OutboundPolicy

_NOT_CONFIGURED = Message(
    "LLM 提供商 {provider} 未配置:请设置 {variables}",
    "LLM provider {provider} is not configured: set {variables}",
)
_UNKNOWN_PROVIDER = Message("未知的 LLM 提供商 {provider}", "unknown LLM provider {provider}")


@dataclass(frozen=True)
class ProviderEndpoint:
    """One provider's chat-completions endpoint; requests go to `{base_url}/chat/completions`."""

    provider: str
    base_url: str
    # Kept out of repr (and so out of str, logs and error messages built from the endpoint).
    api_key: str | None = field(repr=False)
    # Set when the base URL is a node's own: every request must pass this policy, and goes to
    # the address checked (DNS rebinding). None: the operator's URL, trusted as configured.
    outbound: OutboundPolicy | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _ProviderSpec:
    prefixes: tuple[str, ...]  # environment prefixes, the preferred first
    default_base_url: str | None
    needs_key: bool


_DASHSCOPE_URL: Final = "https://dashscope.aliyuncs.com/compatible-mode/v1"

_PROVIDERS: Final[Mapping[str, _ProviderSpec]] = {
    "deepseek": _ProviderSpec(("DEEPSEEK",), "https://api.deepseek.com/v1", needs_key=True),
    "openai": _ProviderSpec(("OPENAI",), "https://api.openai.com/v1", needs_key=True),
    "qwen": _ProviderSpec(("QWEN", "DASHSCOPE"), _DASHSCOPE_URL, needs_key=True),
    "dashscope": _ProviderSpec(("DASHSCOPE", "QWEN"), _DASHSCOPE_URL, needs_key=True),
    "ollama": _ProviderSpec(("OLLAMA",), "http://127.0.0.1:11434/v1", needs_key=False),
    "vllm": _ProviderSpec(("VLLM",), None, needs_key=False),
    "custom": _ProviderSpec(("CUSTOM",), None, needs_key=False),
}


class ProviderNotConfigured(LLMError):
    """The environment lacks what the provider needs; retrying cannot help, an operator can."""

    def __init__(self, provider: str, variables: tuple[str, ...]) -> None:
        super().__init__(
            _NOT_CONFIGURED,
            retryable=False,
            provider=provider,
            variables=" / ".join(variables),
        )
        self.provider = provider
        self.variables = variables


def normalise_base_url(url: str) -> str:
    """The form base URLs are compared and joined in: no surrounding blanks, no trailing slash."""
    return url.strip().rstrip("/")


def _first_set(environ: Mapping[str, str], prefixes: tuple[str, ...], suffix: str) -> str | None:
    for prefix in prefixes:
        value = environ.get(f"{prefix}{suffix}", "").strip()
        if value:
            return value
    return None


def resolve_endpoint(
    provider: str,
    node_base_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    outbound: OutboundPolicy | None = None,
) -> ProviderEndpoint:
    """The endpoint a node naming `provider` (and perhaps its own base_url) calls; a node's
    base_url is held to `outbound` (when given) on every request.

    Raises `ProviderNotConfigured` (naming the variables to set) when neither the environment
    nor the node says where the provider is, or a provider that needs a key has none.
    """
    env = os.environ if environ is None else environ
    spec = _PROVIDERS.get(provider)
    if spec is None:
        raise LLMError(_UNKNOWN_PROVIDER, retryable=False, provider=provider)
    key = _first_set(env, spec.prefixes, "_API_KEY")
    configured = _first_set(env, spec.prefixes, "_BASE_URL") or spec.default_base_url
    trusted = normalise_base_url(configured) if configured else None
    if node_base_url is not None and node_base_url.strip():
        chosen = normalise_base_url(node_base_url)
        # The key goes only where the operator said it may; see the module's docstring.
        return ProviderEndpoint(
            provider, chosen, key if chosen == trusted else None, outbound=outbound
        )
    if trusted is None:
        raise ProviderNotConfigured(provider, tuple(f"{p}_BASE_URL" for p in spec.prefixes))
    if spec.needs_key and key is None:
        raise ProviderNotConfigured(provider, tuple(f"{p}_API_KEY" for p in spec.prefixes))
    return ProviderEndpoint(provider, trusted, key)
