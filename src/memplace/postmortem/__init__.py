"""Post-mortem thread state: TLS variables and pthread keys from cores and live processes.

Composable helpers, usable from Python or a drgn session:

>>> from memplace.postmortem import open_core, tls_values, pthread_keys   # doctest: +SKIP
>>> target = open_core("core")                                            # doctest: +SKIP
>>> tls_values(target, ["errno"])                                         # doctest: +SKIP
>>> th = target.threads[0]                                                # doctest: +SKIP
>>> hex(thread_pointer(target, th))                                       # doctest: +SKIP
'0x7f4978013740'
>>> tls_block(target, th, target.exe)                                     # doctest: +SKIP
TlsBlock(address=140227787536040, state='ok', how='static')
>>> hex(tls_address(target, th, target.exe, 0x10))                        # doctest: +SKIP
'0x7f49780136b8'
>>> pthread_keys(target).findings                                         # doctest: +SKIP
[]
"""

from memplace.postmortem.keys import pthread_keys
from memplace.postmortem.target import open_core
from memplace.postmortem.threads import thread_pointer
from memplace.postmortem.tls import tls_values
from memplace.postmortem.tls_location import tls_address, tls_block

__all__ = ["open_core", "pthread_keys", "thread_pointer", "tls_address", "tls_block", "tls_values"]
