"""NATS JetStream: stream definitions, the integration-event envelope, the client, the relay."""
