"""``gitsail server``: the JSON API and the web UI (docs/ui.md, docs/rbac.md).

A process apart from the controller: it serves from watch caches (``state``), signs users
in with local accounts (``auth``), checks Argo CD-style RBAC (``rbac``) and asks the
controller for work through the same API objects as the CLIs (``service``).
"""
