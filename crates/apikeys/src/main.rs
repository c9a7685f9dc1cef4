//! The apikeys program (in progress).
fn main() {}
