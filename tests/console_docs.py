"""MCP documents the console tests apply: one valid, one with a path-naming error."""

GOOD_DOC = """\
models:
  - name: gpt-4o
    endpoint: https://api.example.com/v1
    weight: 3
  - name: llama
    endpoint: http://10.0.0.7:8000/v1
routing:
  policy: weighted
"""
BAD_DOC = """\
models:
  - name: gpt-4o
    endpoint: ftp://api.example.com/v1
"""
