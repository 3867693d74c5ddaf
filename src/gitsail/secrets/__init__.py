"""Secrets that are safe in Git: Bitnami Sealed Secrets, byte-compatible with kubeseal.

``sealing`` is the hybrid RSA-OAEP + AES-GCM wire format and the scope labels, ``keys`` the
controller's key Secrets (generation, renewal, loading), ``sealedsecret`` sealing a Secret
into a SealedSecret and back. Nothing here logs, and no error carries a plaintext.
"""
