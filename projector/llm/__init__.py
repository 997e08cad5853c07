"""Talking to an LLM: the OpenAI-compatible client and reply schemas (``client``), the embedded llama.cpp server
(``server``), the concurrent job runner (``runner``), the append-only call records (``records``), the checks
on what a reply says (``replies``) and OpenAI's Batch API (``batch``)."""
