mod config;
mod http;
mod wheel;

fn main() {}
