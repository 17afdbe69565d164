"""The ``mcpctl`` command line: one module per command (``register`` + ``run``)."""
