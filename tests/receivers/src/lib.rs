//! Test receivers that behave as `../shared/protocols.md` says, with scripted faults:
//! Splunk HEC, Elasticsearch/OpenSearch `_bulk` (with Amazon OpenSearch Service's SigV4),
//! OTLP logs (gRPC and HTTP), a Sumo Logic HTTP Logs source, Grafana Loki's push API,
//! AWS Security Hub's finding import, a forward/CONNECT proxy, and a scripted peer that
//! answers as a test says (redirects, answers that account for nothing).
//!
//! Each runs an HTTP/1.1 server on 127.0.0.1 (a free port) in its own runtime, so both
//! async unit tests and end-to-end tests of the binary can use it.

pub mod corpus;
pub mod elasticsearch;
pub mod harness;
pub mod hec;
pub mod loki;
pub mod otlp;
pub mod proxy;
pub mod scripted;
pub mod security_hub;
pub mod server;
pub mod sigv4;
pub mod sumo;
pub mod tls;
