"""Composition logic, free of HTTP and Ray: works over `name -> async callable` mappings."""
