"""The throwaway CA of the gRPC TLS tests serves the HTTP ones too."""

from tests.searcher.test_auth_tls import pki  # noqa: F401  (a fixture, used by name)
