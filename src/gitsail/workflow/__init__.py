"""The delivery workflow around the controller: image updates, promotion, previews, doctor.

Commands a developer or CI runs in a checkout of the manifests repository (``gitsail image
set``, ``promote``, ``preview``, ``doctor``). Each module does one step and hands back records;
the CLI prints them. Files are edited as text splices (``yamledit``) so a change is the diff a
person would make; git runs as the user's own ``git`` with validated argv (``gitops``).
"""
