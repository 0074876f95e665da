"""What credential resolution produces: :class:`ResolvedAuth`, and the :class:`AdapterState` a cloud adapter
hangs off it.

Its own module so that :mod:`providers.credentials` (which calls the cloud adapters) and
:mod:`providers.cloud` (whose adapters build these values) both import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .masking import Mask, url_password

__all__ = ["AdapterState", "ResolvedAuth"]


class AdapterState:
    """Per-provider state a cloud adapter keeps between :meth:`resolve` and :meth:`finalize` (a signer, a
    token cache, a deployment map). It lives exactly as long as the :class:`ResolvedAuth` it hangs off: the
    credential cache owns both, so two runtimes in one process, or a reload, never share or see stale state.
    """

    def rotating_secrets(self) -> tuple[str, ...]:
        """Short-lived secrets obtained after resolution (a refreshed access token), to mask in messages."""
        return ()


@dataclass(frozen=True, slots=True)
class ResolvedAuth:
    """What a request to one provider carries: the base URL with placeholders filled, and headers."""

    base_url: str
    headers: Mapping[str, str]
    #: Where the key came from, for `switchboard doctor` and logs ("env OPENAI_API_KEY"); never the key.
    source: str
    #: The raw key value that produced the key, so a 401 can forget a cached ``!command``.
    key_value: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: Every secret the headers carry: the key, and header values that came from ``$VAR``/``!command``.
    secrets: tuple[str, ...] = ()
    #: The key itself, for a model whose wire API wants it in another header.
    key: str | None = field(default=None, repr=False)
    #: The cloud adapter's own state for this resolution (None for a provider without an adapter).
    state: AdapterState | None = field(default=None, repr=False, compare=False)

    _mask: Mask | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def mask(self) -> Mask:
        """The secrets' masks, built on first use (most requests never need them)."""
        mask = self._mask
        if mask is None:
            mask = Mask((*self.secrets, *url_password(self.base_url)))
            object.__setattr__(self, "_mask", mask)
        return mask

    def scrub(self, message: str) -> str:
        """``message`` with any secret this auth sends masked (providers echo rejected keys), then cut."""
        if self.state is not None:
            # Rotating tokens first: the shared mask cuts long messages, which must not cut a token in half.
            for token in self.state.rotating_secrets():
                if token:
                    message = message.replace(token, "***")
        return self.mask.text(message)
