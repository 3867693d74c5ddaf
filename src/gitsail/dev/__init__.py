"""Local development ground: pinned upstream tools, a real control plane, a git server."""
