"""The checked-in stubs are exactly what the pinned generator makes from the ``.proto``."""

from __future__ import annotations

from protos import generate


def test_checked_in_stubs_match_the_proto() -> None:
    stale = generate.stale_stubs()

    assert stale == [], f"stale stubs {stale}: run `python -m protos.generate`"


def test_stubs_import_under_the_protos_package() -> None:
    from protos.albatross.v1 import albatross_pb2, albatross_pb2_grpc

    assert albatross_pb2.DESCRIPTOR.package == "albatross.v1"
    assert {"Collections", "Ingest", "Search"} <= set(albatross_pb2.DESCRIPTOR.services_by_name)
    assert hasattr(albatross_pb2_grpc, "SearchServicer")
