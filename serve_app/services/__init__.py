"""What each endpoint does, apart from HTTP parsing: one module per capability."""
