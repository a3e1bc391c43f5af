"""Calling LLM providers: every provider speaks OpenAI's chat-completions protocol.

`providers.resolve_endpoint` turns a provider name (and a node's optional base_url) into an
endpoint from the environment; `client.ChatClient` calls it, streaming or not, with retries.
"""
