"""The LLM enrichment stage: ``shop.reviews`` in, ``shop.reviews.enriched`` out.

It runs beside the worker, never in front of it: the worker analyses each review with
the local analyzer at once and folds the LLM's answer in when it arrives. Faults of the
endpoint (rate limits, errors, timeouts, malformed answers, an exhausted budget) turn
into local results, so every valid review yields exactly one enriched record.
"""
