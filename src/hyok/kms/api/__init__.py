"""The KMS OpenAPI front: request parameters, the KMS error codes and the response bodies."""
