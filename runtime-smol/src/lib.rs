//! The smol runtime of Shale and the pieces of the `shale` program
//!
//! placeholder: module docs come with the runtime

pub mod bench;
pub mod cli;
pub mod front;
pub mod metrics;
pub mod node;
pub mod resp;
pub mod runtime;
pub mod server;
