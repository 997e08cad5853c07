"""The on-disk contracts the stages meet at, one owner per format: the user's corpus (``corpus``), the pairs
or items folder (``pairs``), users' real queries (``realqueries``), the trained artifact (``artifact``) and
the vector conventions both sides of it share (``vectors``)."""
