"""The one error type of the render stage."""

from __future__ import annotations

__all__ = ["RenderError"]


class RenderError(Exception):
    """A render failed: bad manifests, bad options, or helm/kustomize said no.

    The message says what failed and where (``file:line``, or the tool's own stderr), prefixed
    by the app path when the renderer knows it. It never carries secret values: URL
    credentials and sensitive Helm parameter values are redacted before they get here.
    Nothing is written to the artifact when a render fails, and a failed render is not cached.
    """

    def __init__(self, message: str, *, app_path: str = "", tool: str = "") -> None:
        self.detail = message
        self.app_path = app_path
        self.tool = tool
        super().__init__(self._text())

    def _text(self) -> str:
        where = self.app_path or ""
        if self.tool:
            where = f"{where} ({self.tool})" if where else self.tool
        return f"{where}: {self.detail}" if where else self.detail

    def for_app(self, app_path: str, tool: str) -> RenderError:
        """The same error, located at an app path (keeps an existing location)."""
        return RenderError(self.detail, app_path=self.app_path or app_path, tool=self.tool or tool)
