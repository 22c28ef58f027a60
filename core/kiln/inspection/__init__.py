"""What an archive holds (``kiln inspect``) and whether it is sound (``kiln verify``).

:func:`describe_archive` reads a well-formed archive and describes it; it raises the
archive's error (:class:`~kiln.errors.ArchiveError`) on a damaged one.
:func:`verify_archive` never raises for a damaged or hostile archive: it reports every
problem it finds, each naming the section, graph, node, kernel or address concerned.
"""

from __future__ import annotations

from kiln.inspection.describe import describe_archive
from kiln.inspection.verify import verify_archive

__all__ = ["describe_archive", "verify_archive"]
