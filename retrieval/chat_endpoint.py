"""A client for an OpenAI-compatible chat server (vLLM, llama.cpp, Ollama, TGI, OpenAI): the
synthesis teacher and the evaluation judge both talk to one through this."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class EndpointError(Exception):
    """The server could not be reached or gave no usable answer; the message says what to do."""


class NoCompletion(EndpointError):
    """The server answered JSON that holds no chat completion."""


class ChatEndpoint:
    """One server.

    Args:
        url: e.g. 'http://localhost:8000', '.../v1' or '.../v1/chat/completions'.
        role: what the server is for ('teacher', 'judge'), named in every error.
        api_key: sent as a bearer token when given (local servers usually need none).
        timeout: seconds to wait for one reply.
        unreachable_hint: what the user can do when the server does not answer.
        rejected_hint: what to check when it answers with an HTTP error.
    """

    def __init__(
        self,
        url: str,
        role: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        unreachable_hint: str = "start it",
        rejected_hint: str = "check the model name",
    ) -> None:
        root = url.rstrip("/").removesuffix("/chat/completions").removesuffix("/v1")
        self.base = root + "/v1"
        self.role = role
        self.api_key = api_key
        self.timeout = timeout
        self.unreachable_hint = unreachable_hint
        self.rejected_hint = rejected_hint

    def request(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET (no payload) or POST JSON to `base + path`; the decoded JSON reply."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        where = f"the {self.role} server at {self.base}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")[:300]
            raise EndpointError(
                f"{where} answered HTTP {error.code} to {path}: {detail}; {self.rejected_hint}"
            ) from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise EndpointError(
                f"cannot reach {where} ({reason}): {self.unreachable_hint}"
            ) from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise EndpointError(f"{where} did not answer JSON to {path}") from error

    def first_model(self) -> str:
        """The first model the server lists at /v1/models."""
        listed = self.request("/models").get("data") or []
        if not listed:
            raise EndpointError(
                f"the {self.role} server at {self.base} lists no model: name one in the setting"
            )
        return listed[0]["id"]

    def chat(
        self,
        model: str,
        messages: list[dict[str, str]],
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
    ) -> str:
        """One chat completion's text: greedy unless `temperature` > 0; `response_format` is
        passed through (e.g. a JSON schema the server enforces)."""
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if response_format is not None:
            payload["response_format"] = response_format
        reply = self.request("/chat/completions", payload)
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as error:
            raise NoCompletion(
                f"the {self.role} server at {self.base} returned no chat completion: "
                f"{str(reply)[:200]}"
            ) from error
