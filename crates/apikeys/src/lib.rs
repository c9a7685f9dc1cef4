//! The `apikeys` program: composes the domain, the PostgreSQL adapter and the
//! HTTP adapter, and provides the command line (README.md, "The program").
//!
//! The library half exists so that the end-to-end tests build exactly the
//! [`Application`](application::Application) the program runs.

pub mod application;
pub mod commands;
pub mod config;
pub mod metrics;
pub mod telemetry;
