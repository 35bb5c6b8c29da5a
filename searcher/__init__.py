"""Albatross searcher: everything that answers (gRPC servicers, batching, filters, results, client)."""
