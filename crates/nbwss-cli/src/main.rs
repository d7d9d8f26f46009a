//! The `nbwss` command.

fn main() {}
