"""Scale-out: several engine processes ("nodes") sharing one PostgreSQL database.

The pure escrow model is :mod:`lijian.core.escrow`; :mod:`lijian.escrow.pg` holds its
transactions in SQL, :mod:`lijian.escrow.node` the node engine, and
:mod:`lijian.escrow.cluster` starts N of them (what ``lijian serve --workers N`` uses).
See docs/SCALE-OUT.md.
"""
