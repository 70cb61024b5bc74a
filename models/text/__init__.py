"""Review-text understanding: one analyzer interface, a local analyzer, LLM prompts.

:mod:`models.text.result` defines the :class:`~models.text.result.Analysis` every analyzer
returns (and its JSON schema, which the LLM answers are validated against);
:mod:`models.text.local` is the embedded analyzer that needs no network;
:mod:`models.text.describe` turns a behavioural cluster profile into words.
"""
