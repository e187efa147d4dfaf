"""Code shared by the KMS service, the XKI proxy and the key-manager backends."""
