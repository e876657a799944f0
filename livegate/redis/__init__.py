"""The Redis data plane: every key (:mod:`.keys`), the session record and its atomic scripts (:mod:`.records`),
the batched bus between fronts and workers (:mod:`.bus`, with its one-node fast path :mod:`.resp`), and
connecting to one Redis or a Redis Cluster (:mod:`.connect`, :mod:`.cluster`)."""
