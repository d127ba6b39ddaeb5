//! Cost of the metrics on a first-try call (being written).

fn main() {}
