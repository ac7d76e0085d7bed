//! vaxctl's library side: operations the CLI runs that tests also drive.

pub mod backup;
pub mod smoke;
pub mod synthetic;
