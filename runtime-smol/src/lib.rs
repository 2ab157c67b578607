//! placeholder

pub mod resp;
