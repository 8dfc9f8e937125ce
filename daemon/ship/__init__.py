"""robovid-ship: finished chunk files and their metadata to an fsspec destination, verified, then pruned locally.

Read :mod:`.shipper` for the loop and its promises, :mod:`.store` for how an object is
written so it is never half-visible, :mod:`.manifest` for the remote layout and the commit,
:mod:`.retention` for what may be deleted locally, and :mod:`robovid_watch.finished` for what
"finished" means.
"""
