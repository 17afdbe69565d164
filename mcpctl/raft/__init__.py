"""Raft for the node: everything that knows PySyncObj 0.3.17 lives in this package.

- ``node``: ``RaftNode``, the member the rest of the node sees (propose,
  membership, step down, the published ``RaftStatus``);
- ``syncobj``: every use of PySyncObj's private internals, behind
  ``install()`` (version check) and its ``INVENTORY``;
- ``decisions``: pre-vote, next index, fast election, reachability, restore
  and read index decisions as pure functions;
- ``readindex``: linearizable reads by ReadIndex (a majority round, no log entry);
- ``conf``: PySyncObj's settings for a member;
- ``status``: typed values (``RaftStatus``, ``Role``, ``ProposeError``, lag);
- ``snapshot``: the store as PySyncObj's consumer, our snapshot file;
- ``cipher``: the AES-256-GCM peer cipher.
"""
