"""The embedded local stack: real Apache Kafka (KRaft) and real Triton on 127.0.0.1, no Docker."""
