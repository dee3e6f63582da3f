"""Birdwatch: classify the birds in image URLs, standalone or as a Kafka consumer group."""
