"""The command line (:mod:`.main`) and what it runs on top of every component: the in-process dev stack
(:mod:`.devstack`), ``livegate chat`` (:mod:`.chat`) and the demo conversation (:mod:`.demo`).

This package imports the front, the workers and the emulator; nothing in the rest of ``livegate`` imports it."""
