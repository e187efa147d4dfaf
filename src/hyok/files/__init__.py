"""Envelope encryption of files: the message format and its streaming codec.

``hyok encrypt-file`` and ``hyok decrypt-file`` (:mod:`hyok.cli.files`) use
this package with a data key from the KMS. See docs/file-format.md.
"""
