"""Imported by multiprocessing's fork server only (the local launcher adds it to the server's
preload list; nothing else imports it). When the server ends — its launcher is gone, so the
launcher's end of the liveness pipe closed — it removes its listening socket file and the
launcher's multiprocessing temporary folder around it (``pymp-*``): a killed launcher cannot."""

import atexit
import os
from multiprocessing import forkserver


def _remove_listener() -> None:
    address = getattr(forkserver._forkserver, "_forkserver_address", None)  # set by the server's main()
    if isinstance(address, str) and os.path.isabs(address):  # a socket file, not an abstract socket
        for remove, path in ((os.unlink, address), (os.rmdir, os.path.dirname(address))):
            try:
                remove(path)
            except OSError:  # already gone (the launcher cleaned up), or the folder is not empty
                pass


atexit.register(_remove_listener)
