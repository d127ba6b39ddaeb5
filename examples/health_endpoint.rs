//! The `/health` + `/metrics` service (being written).

fn main() {}
