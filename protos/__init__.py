"""The gRPC contract of Albatross (package ``albatross.v1``) and its generated stubs."""
