"""LangGraph's own test suite, run with this package's savers plugged in.

``python -m langgraph_suite`` downloads the sdist of the installed langgraph (PyPI
ships its ``tests/``), keeps it under ``.cache/langgraph-tests/`` and runs its
checkpointer-heavy files with :mod:`langgraph_suite.plugin`, which adds our savers
to LangGraph's ``sync_checkpointer`` / ``async_checkpointer`` fixtures and in place of
the ``InMemorySaver()`` that some files build directly. Not part of the shipped
package.
"""
