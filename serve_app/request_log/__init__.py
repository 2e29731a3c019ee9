"""The request log: one JSON line per request (record, middleware, writer, reader) and the
redaction of personal data before a line is written."""
