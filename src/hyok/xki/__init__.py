"""The XKI proxy: the XKS proxy API v1 in front of a key-manager backend."""
