"""Pure handlers: decoded records in, outputs and dead letters out. No Kafka import here; the
agents in `streams.agents` move bytes between Kafka and these functions."""
