//! natter: the terminal client.

fn main() {}
