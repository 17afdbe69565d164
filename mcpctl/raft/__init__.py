"""Raft for the node: the adapter around PySyncObj 0.3.17 (``adapter``).

Everything that knows PySyncObj's internals lives in this package; the rest
of the node sees ``RaftNode`` (propose, status, membership, step down) and
typed values (``RaftStatus``, ``Role``, ``ProposeError``).
"""
