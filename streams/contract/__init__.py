"""The contract published to downstream consumers, generated from the code that writes the topics.

Nothing here is written by hand twice: the JSON Schemas come from the pydantic models in
`streams.schemas`, the topic names from `streams.topics`, the dead-letter headers from
`streams.dlq`, and the examples are model instances (and a real `dead_letter(...)`) serialised
by `streams.serde.encode`, the worker's own serialiser. `python -m streams schemas --write`
regenerates `contract/`; the unit tests fail when the committed files differ from the code, or
when a change within a `schema_version` is not additive (`streams.contract.compat`).
"""
