"""Post-mortem thread state: TLS variables and pthread keys from cores and live processes.

Composable helpers, usable from Python or a drgn session:

>>> from memplace.postmortem import open_core, tls_values, pthread_keys   # doctest: +SKIP
>>> target = open_core("core")                                            # doctest: +SKIP
>>> tls_values(target, ["errno"])                                         # doctest: +SKIP
"""

from memplace.postmortem.keys import pthread_keys
from memplace.postmortem.target import open_core
from memplace.postmortem.threads import thread_pointer
from memplace.postmortem.tls import tls_block, tls_values

__all__ = ["open_core", "pthread_keys", "thread_pointer", "tls_block", "tls_values"]
