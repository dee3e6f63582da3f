"""The Kafka adapter: a consumer-group member (`KafkaService`), its delivery guarantees and
offset bookkeeping, the client settings, and the topic commands (create, publish, results)."""
