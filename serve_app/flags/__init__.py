"""Feature flags through OpenFeature: a file-backed provider in flagd's flag-definition format, and
the typed switches the services read (serve_app/flags/switches.py)."""
