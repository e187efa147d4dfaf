"""The KMS service: key metadata, policies and accounts; cryptography is relayed to XKI proxies."""
