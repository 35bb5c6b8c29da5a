"""The HTTP/JSON front-end of the searcher: the same operations as the gRPC API, in the same process.

``searcher.http.app`` builds the aiohttp application and starts it on the server's event loop;
``routes`` is the one table of routes (the OpenAPI document in ``openapi`` is derived from it);
``handlers`` translates JSON to ``albatross.v1`` messages and back around ``searcher.operations``;
``middleware`` carries the request id, access log, metrics, CORS, token check and admission bound;
``codec`` is the proto3 JSON mapping; ``static/`` holds the search page and the API docs page.
"""
