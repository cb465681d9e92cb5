//! The Kafka wire protocol at the edges of the broker: framing, request headers, response
//! encoding and RecordBatch v2 headers. Message bodies are the `kafka-protocol` crate's types;
//! nothing here parses a message body by hand.

pub mod batch;
pub mod decompress;
pub mod frame;
pub mod request;
