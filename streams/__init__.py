"""The real-time marketing scorer: Faust agents over Kafka calling Triton-served models."""
