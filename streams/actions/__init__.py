"""``segstream actions``: a faust-streaming app that acts on segment changes.

Modules: :mod:`~streams.actions.config` (settings), :mod:`~streams.actions.contracts`
(decode boundary), :mod:`~streams.actions.engine` (pure campaign decisions),
:mod:`~streams.actions.app` (faust agents, tables, web views),
:mod:`~streams.actions.topics` (topic creation), :mod:`~streams.actions.cli` (command).
"""
