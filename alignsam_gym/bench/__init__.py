"""Benchmarks that measure the env side (backends, decoders); each returns a JSON-ready dict."""
